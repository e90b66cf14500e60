"""maskwatch: real-time face-mask compliance from images and video streams.

The package has two halves. The runtime (``maskwatch.runtime``, ``maskwatch.sources``,
``maskwatch.draw``) needs only numpy, OpenCV and ONNX Runtime. Training, export and Grad-CAM
(``maskwatch.data``, ``maskwatch.training``, ``maskwatch.export``, ``maskwatch.explain``)
need the ``[train]`` extra (torch, torchvision).
"""

__version__ = "0.1.0"
