"""linsteer: find, validate and apply linear reasoning directions in language models."""

__version__ = "0.1.0"
