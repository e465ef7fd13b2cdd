"""aiplane: a self-hostable AI engineering platform."""

__version__ = "0.1.0"
