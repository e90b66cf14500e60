"""Build the seed corpus for fuzz_parsers.py: small valid inputs of each kind, made here (no photos committed).

    python tests/fuzz/make_corpus.py tests/fuzz/corpus

Each file starts with one byte that picks the target (see fuzz_parsers.TARGETS), then the input itself.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image


def _image(format_name: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (6, 4), 128 if mode in ("L", "I;16") else (200, 120, 90)[: len(mode)]).save(buffer, format=format_name)
    return buffer.getvalue()


def seeds() -> dict[str, bytes]:
    """name -> bytes (target byte + input)."""
    voc = (
        "<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height></size>"
        "<object><name>with_mask</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
        "</annotation>"
    )
    prediction = json.dumps(
        {
            "source": "a.jpg",
            "frame": 0,
            "faces": [
                {"box": [1, 2, 30, 40], "label": "with_mask", "score": 0.9, "face_score": 0.8, "probs": {"with_mask": 0.9}}
            ],
        }
    )
    return {
        "image_png": b"\x00" + _image("PNG", "RGB"),
        "image_gray_png": b"\x00" + _image("PNG", "L"),
        "image_jpeg": b"\x00" + _image("JPEG", "RGB"),
        "image_gif": b"\x00" + _image("GIF", "P"),
        "voc": b"\x01" + voc.encode(),
        "predictions": b"\x02" + (prediction + "\n" + prediction[:40]).encode(),
        "config": b"\x03" + b"epochs: 3\nlr: 0.001\ndata: [faces]\nmodel: mobilenet_v2\n",
        "source_glob": b"\x04" + b"*.png",
        "source_folder": b"\x04" + b".",
    }


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (out / name).write_bytes(data)
    print(f"wrote {len(seeds())} seeds to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("corpus")))
