"""reseg: semantic segmentation of remote sensing imagery with confidence rounds."""

__version__ = "0.1.0"
