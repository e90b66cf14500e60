"""Grad-CAM explanations and the lower-face focus score (the ``[train]`` extra)."""
