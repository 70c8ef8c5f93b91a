"""The command line (click): a thin layer over the core, the batch engine and evaluation."""
