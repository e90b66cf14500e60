"""Datasets: indexing (class folders, VOC scenes), leak-free split manifests and loading face crops, torch-free so
that ``maskwatch evaluate`` can use them in a runtime install; ``transforms`` (augmentation, torch) is training's own
and the runtime never imports it (tests/test_structure.py)."""
