"""Process plumbing: runtimes, the garbage collector, batching, clocks, listening sockets,
log context fields and the tracing seam.

A leaf: nothing here imports another package of this project, and every package may
import it.
"""
