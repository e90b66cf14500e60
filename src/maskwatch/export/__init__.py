"""ONNX export, int8 quantisation and parity checks (the ``[train]`` extra)."""
