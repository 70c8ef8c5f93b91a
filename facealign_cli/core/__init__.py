"""The model core: pure array geometry, the 3DMM, the Face result type and the FaceAligner
pipeline (no files, no CLI)."""
