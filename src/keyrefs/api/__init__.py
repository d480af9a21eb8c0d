"""The keyrefs HTTP service: a thin FastAPI adapter over `KeyrefsService`."""

from keyrefs.api.app import create_app

__all__ = ["create_app"]
