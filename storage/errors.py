"""Errors raised by the storage layer.

Exception tree::

    StorageError                 a driver failed; the original is chained (``raise ... from``)
    └── StorageUnavailable       the server could not be reached; retrying later may work
"""

from __future__ import annotations

__all__ = ["StorageError", "StorageUnavailable"]


class StorageError(Exception):
    """A Redis or PostgreSQL operation failed."""


class StorageUnavailable(StorageError):
    """Redis or PostgreSQL could not be reached."""
