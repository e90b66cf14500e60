"""Load every sample once into memory as a square uint8 crop, and hash each file for grouping.

Face-mask datasets are small (thousands of faces), so holding them as arrays at slightly above the
model's input size costs a few hundred MB and saves re-decoding large scene photos every epoch.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskwatch.crop import DEFAULT_MARGIN, crop_face, whole_image_crop
from maskwatch.data.index import Sample, index_source
from maskwatch.data.splits import ManifestRow, SplitFractions, near_duplicate_groups, read_manifest, split_of
from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.labels import LABELS
from maskwatch.progress import track

log = logging.getLogger(__name__)


@dataclass
class LoadedSamples:
    """Samples that loaded, their crops (N, S, S, 3 uint8) and the files that failed."""

    samples: list[Sample]
    crops: np.ndarray
    file_hashes: dict[Path, int]
    problems: list[str]


def decoded_photos(
    samples: Sequence[Sample], wanted: Callable[[Sample], bool], description: str, problems: list[str]
) -> Iterator[tuple[Path, np.ndarray, list[int]]]:
    """Each file holding a wanted sample, decoded once, with the positions of its wanted samples; a file that cannot be
    decoded adds one line to ``problems`` and is skipped."""
    by_file: dict[Path, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        if wanted(sample):
            by_file[sample.path].append(i)
    for path, indices in track(by_file.items(), description=description, total=len(by_file)):
        try:
            image = load_rgb(path)
        except ImageLoadError as error:
            problems.append(str(error))
            continue
        yield path, image, indices


def load_samples(
    samples: Sequence[Sample],
    *,
    size: int,
    margin: float = DEFAULT_MARGIN,
    hash_files: bool = True,
    whole_image: str = "crop",
) -> LoadedSamples:
    """Decode each file once; crop its faces at ``size`` x ``size``: scene faces around their box, whole-face files
    (class folders) by the ``whole_image`` geometry of :func:`maskwatch.crop.whole_image_crop`."""
    crops: list[np.ndarray | None] = [None] * len(samples)
    hashes: dict[Path, int] = {}
    problems: list[str] = []
    for path, image, indices in decoded_photos(samples, lambda sample: True, "loading images", problems):
        if hash_files:
            hashes[path] = perceptual_hash(image)
        for i in indices:
            box = samples[i].box
            try:
                if box is None:
                    crops[i] = whole_image_crop(image, geometry=whole_image, margin=margin, size=size)
                else:
                    crops[i] = crop_face(image, box, margin=margin, size=size)
            except ValueError as error:
                problems.append(f"{path}: {error}")
    kept = [i for i, crop in enumerate(crops) if crop is not None]
    stacked = np.stack([crops[i] for i in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
    return LoadedSamples([samples[i] for i in kept], stacked, hashes, problems)


def cut_at_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """The pixels inside ``box`` (rounded to whole pixels and clipped to the image), as a crop set cut at annotated
    boxes holds a face; None when under 2 px of it lies inside the image."""
    height, width = image.shape[:2]
    x1, x2 = np.clip(np.rint([box[0], box[2]]).astype(int), 0, width)
    y1, y2 = np.clip(np.rint([box[1], box[3]]).astype(int), 0, height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def box_cut_crops(
    samples: Sequence[Sample], *, size: int, margin: float, whole_image: str = "crop"
) -> tuple[list[int], np.ndarray, list[str]]:
    """Each boxed sample cut exactly at its box (:func:`cut_at_box`), then turned into a crop the way ``evaluate``
    turns such a file into one (:func:`maskwatch.crop.whole_image_crop` in the model's ``whole_image`` geometry): with
    ``crop`` the face keeps its margin, made of replicated border pixels instead of the photo around it. Returns the
    positions of the samples cut, their crops and one line per photo or box that could not be used."""
    kept: list[int] = []
    crops: list[np.ndarray] = []
    problems: list[str] = []
    for path, image, indices in decoded_photos(samples, lambda sample: sample.box is not None, "box-exact copies", problems):
        for i in indices:
            face = cut_at_box(image, samples[i].box)
            if face is None:
                problems.append(f"{path}: box {list(samples[i].box)} is under 2 px inside the image; no box-exact copy")
                continue
            kept.append(i)
            crops.append(whole_image_crop(face, geometry=whole_image, margin=margin, size=size))
    stacked = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    return kept, stacked, problems


def load_labelled_crops(
    source: Path, *, size: int, margin: float, split: str = "val", whole_image: str = "crop"
) -> tuple[list[np.ndarray], list[int]]:
    """(crops, label indices) from a splits.csv (rows of ``split``) or a class-folder tree: the faces that int8
    calibration, parity checks and model studies run on, cut as training cut them."""
    if source.is_file() and source.name.endswith((".csv", ".csv.gz")):
        samples = [row.sample for row in read_manifest(source) if row.split == split]
    else:
        samples = index_source(source).samples
    loaded = load_samples(samples, size=size, margin=margin, whole_image=whole_image)
    for problem in loaded.problems:
        log.warning("%s", problem)
    return list(loaded.crops), [LABELS.index(s.label) for s in loaded.samples]


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit pHash of an RGB image: near-duplicates (resized, re-encoded, lightly edited copies) differ in few bits."""
    import imagehash

    return int(str(imagehash.phash(Image.fromarray(image))), 16)


def hash_image_files(paths: Sequence[Path]) -> tuple[dict[Path, int], list[str]]:
    """Perceptual hashes of files (one-line problems for those that do not load)."""
    hashes: dict[Path, int] = {}
    problems: list[str] = []
    for path in track(paths, description="hashing images", total=len(paths)):
        try:
            hashes[path] = perceptual_hash(load_rgb(path))
        except ImageLoadError as error:
            problems.append(str(error))
    return hashes, problems


def assign_splits(
    loaded: LoadedSamples,
    *,
    fractions: SplitFractions = SplitFractions(),
    seed: int = 0,
    max_distance: int = 6,
    root: Path | None = None,
    roots: Sequence[Path] = (),
) -> list[ManifestRow]:
    """Group near-duplicate files and give every face of a group the same split.

    ``roots`` (the data folders) make each key ``<data folder name>/<path inside it>``, whatever way the folder was
    spelled (relative, absolute, ``.``); ``root`` is the older form, a folder that contains the data folders.
    """
    files = sorted(loaded.file_hashes)
    keys = [_source_key(path, roots) if roots else _relative_key(path, root) for path in files]
    groups = near_duplicate_groups(keys, np.array([loaded.file_hashes[p] for p in files], dtype=np.uint64), max_distance)
    group_of = dict(zip(files, groups))
    return [
        ManifestRow(sample, group_of[sample.path], split_of(group_of[sample.path], fractions, seed)) for sample in loaded.samples
    ]


def _source_key(path: Path, roots: Sequence[Path]) -> str:
    """``<data folder name>/<path inside it>`` from resolved paths, so the key (and with it the split) does not
    depend on how the data folder was spelled. The innermost data folder that holds ``path`` wins."""
    resolved = Path(path).resolve()
    holders = [(Path(r).resolve(), Path(os.path.abspath(r)).name) for r in roots]  # name as spelled: '.' -> its name
    holders = [(real, name) for real, name in holders if resolved.is_relative_to(real)]
    if not holders:
        return f"{resolved.parent.name}/{resolved.name}"
    home, name = max(holders, key=lambda holder: len(holder[0].parts))
    return f"{name}/{resolved.relative_to(home).as_posix()}"


def _relative_key(path: Path, root: Path | None) -> str:
    """A key that survives moving the data folder: the path relative to the data root."""
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return f"{Path(path).parent.name}/{Path(path).name}" if root is None else str(path)


def extend_splits(
    old_rows: Sequence[ManifestRow],
    old_hashes: dict[Path, int],
    new: LoadedSamples,
    *,
    fractions: SplitFractions = SplitFractions(),
    seed: int = 0,
    max_distance: int = 6,
    root: Path | None = None,
) -> list[ManifestRow]:
    """Add ``new`` samples to an existing manifest without moving any of its rows.

    New files are grouped with each other and with the old files (perceptual hash, as :func:`assign_splits`); a new
    file that is a near-duplicate of an old one joins that old file's group and split, so no photo straddles the line;
    the other new groups get the split their key hashes to.
    """
    old_group = {row.sample.path: (row.group, row.split) for row in old_rows}
    new_files = sorted(set(new.file_hashes) - set(old_group))
    old_files = sorted(p for p in old_hashes if p in old_group)
    files = old_files + new_files
    keys = [_relative_key(path, root) for path in files]
    hashes = np.array([old_hashes[p] for p in old_files] + [new.file_hashes[p] for p in new_files], dtype=np.uint64)
    components = near_duplicate_groups(keys, hashes, max_distance)
    inherited: dict[str, tuple[str, str]] = {}
    for path, component in zip(old_files, components):
        inherited.setdefault(component, old_group[path])
    assigned: dict[Path, tuple[str, str]] = {}
    for path, component in zip(files[len(old_files) :], components[len(old_files) :]):
        assigned[path] = inherited.get(component) or (component, split_of(component, fractions, seed))
    rows = list(old_rows)
    for sample in new.samples:
        if sample.path in assigned:
            group, split = assigned[sample.path]
            rows.append(ManifestRow(sample, group, split))
    return rows
