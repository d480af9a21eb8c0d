"""The service layer: write and read paths, lifecycle and storages.

It is the one layer that opens database transactions and combines the store
with the backends.
"""

from keyrefs.service.core import KeyrefsService

__all__ = ["KeyrefsService"]
