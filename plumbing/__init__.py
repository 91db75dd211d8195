"""Process plumbing: runtimes, the garbage collector, batching, clocks, listening sockets.

A leaf: nothing here imports another package of this project, and every package may
import it.
"""
