"""Benchmarks: AFLW2000-3D and 68-point annotated folders, metrics and reports."""
