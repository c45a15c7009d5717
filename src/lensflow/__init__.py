"""lensflow: from a folder of photos to a live image classifier on a CPU."""

__version__ = "0.1.0"
