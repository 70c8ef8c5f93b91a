"""Training of the facealign regressor (``facealign train``): data preparation, teacher
pseudo-labels and the training loop. Used only at training time; nothing here is imported by the
inference path."""
