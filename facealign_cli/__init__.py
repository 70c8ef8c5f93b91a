"""facealign: batch 3D dense face alignment (3DMM regression) for folders of photos."""

__version__ = "0.1.0"
