"""Dataset indexing, leak-free splits and augmentation for training (the ``[train]`` extra)."""
