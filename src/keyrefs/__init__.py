"""keyrefs: secret references for connector configs."""

__version__ = "0.1.0"
