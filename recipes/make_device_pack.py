"""Copy ../shared/data into a folder small enough for the device machine's 64 MB transfer: chandrika and
MaskedFace-Net images downscaled to at most 256 px (larger than any input size studied) as JPEG quality 85,
scene photos unchanged, plus the MobileNetV2 ImageNet weights from the torch hub cache.

    python recipes/make_device_pack.py .device
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from maskwatch.training.weights import hub_checkpoint_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    target = args.out / "shared" / "data"
    for source in ("chandrika", "maskedface-net"):
        for path in (args.data / source).rglob("*"):
            if path.is_file():
                copy = target / path.relative_to(args.data)
                copy.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as image:
                    image = image.convert("RGB")
                    image.thumbnail((256, 256), Image.LANCZOS)
                    image.save(copy, quality=85)
    shutil.copytree(args.data / "scenes", target / "scenes", dirs_exist_ok=True)
    weights = args.out / "hub" / "checkpoints"
    weights.mkdir(parents=True, exist_ok=True)
    shutil.copy(hub_checkpoint_dir() / "mobilenet_v2-b0353104.pth", weights)


if __name__ == "__main__":
    main()
