"""``maskwatch evaluate``: score a classifier on labelled faces (no torch for ONNX models).

The faces come from a class-folder tree (each file one face), a Pascal VOC scene folder (each box one face) or a split
manifest (the rows of one split). Every face is cut the way the model saw such faces in training: scene boxes with the
runtime's crop, whole-face files with the model's recorded whole-image geometry.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskwatch.crop import crop_face
from maskwatch.fileio import write_json
from maskwatch.imaging import ImageLoadError, LeftOut, is_left_out, is_system_file, leaving_out, load_rgb, outputs_inside
from maskwatch.metrics import plot_confusion_matrix, reports_by_source
from maskwatch.runtime.classifier import OnnxMaskClassifier

if TYPE_CHECKING:
    from maskwatch.data.index import Sample

log = logging.getLogger(__name__)

#: Mistakes shown per source in an error gallery (most confident first).
GALLERY_SIZE = 48


def is_manifest(path: Path) -> bool:
    return Path(path).is_file() and Path(path).name.endswith((".csv", ".csv.gz"))


def samples_of(
    source: Path, split: str = "test", relabel: Sequence[Path] = (), skip: Sequence[Path] = ()
) -> tuple[list[Sample], list[str]]:
    """The labelled faces of a class-folder tree, a VOC scene folder, or the ``split`` rows of a manifest, with the
    corrections of the ``relabel`` lists applied (see :mod:`maskwatch.data.corrections`). ValueError when a list is
    malformed or names no file of ``source`` at all (a list read from the wrong working folder). ``skip``: files and
    folders of a class-folder tree left out (the run's own outputs)."""
    samples, splits, problems = _indexed(source, skip)
    if relabel:
        samples = _relabelled(samples, source, relabel)
    if splits is not None:  # a manifest: corrections were matched against every row, then one split is kept
        samples = [sample for sample, row_split in zip(samples, splits) if row_split == split]
        if not samples:
            problems.append(f"{source}: no rows in split {split!r}")
    return samples, problems


def _indexed(source: Path, skip: Sequence[Path] = ()) -> tuple[list[Sample], list[str] | None, list[str]]:
    """Every face of ``source``, each row's split (None unless a manifest), and the problems met indexing it."""
    # The indexers are torch-free but live in the training-side data package; imported here so that importing the
    # runtime, and detect, never load maskwatch.data.
    from maskwatch.data.index import index_source

    if is_manifest(source):
        from maskwatch.data.splits import read_manifest

        rows = read_manifest(source)
        return [row.sample for row in rows], [row.split for row in rows], []
    report = index_source(Path(source), skip=skip)
    return report.samples, None, list(report.problems)


def _relabelled(samples: list[Sample], source: Path, lists: Sequence[Path]) -> list[Sample]:
    from maskwatch.data.corrections import apply_label_corrections, read_label_corrections

    corrections = read_label_corrections(lists)
    before = [s.label for s in samples]
    samples, unmatched = apply_label_corrections(samples, corrections)
    hint = f"paths are relative to the working folder ({Path.cwd()}) or to the list's folder"
    if corrections and len(unmatched) == len(corrections):
        raise ValueError(f"--relabel: none of the {len(corrections)} corrections names a whole-face file of {source}; {hint}")
    changed = sum(old != s.label for old, s in zip(before, samples))
    log.info("--relabel: %d faces of %s carry a corrected label", changed, source)
    if unmatched:  # a warning, not a skipped file; one line: a list written for several sources names them all
        log.warning(
            "--relabel: %d correction(s) name no whole-face file of %s (first: %s); %s",
            len(unmatched),
            source,
            unmatched[0],
            hint,
        )
    return samples


@dataclass
class Scored:
    """Each usable face's sample, true class index and calibrated probabilities; crops of the mistakes only."""

    samples: list[Sample] = field(default_factory=list)
    truth: list[int] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    mistake_crops: dict[int, np.ndarray] = field(default_factory=dict)


def classify_samples(
    samples: Sequence[Sample], classifier: OnnxMaskClassifier, *, batch_size: int = 64, mirrored: bool = False
) -> tuple[Scored, list[str]]:
    """Decode each file once, cut its faces as training did, classify in batches (``mirrored``: averaged with each
    crop's mirror image, as ``detect`` does on still images); unreadable files become problems."""
    labels = list(classifier.labels)
    by_file: dict[Path, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_file[sample.path].append(sample)
    scored, problems = Scored(), []
    pending: list[tuple[Sample, np.ndarray]] = []

    def flush() -> None:
        probs = classifier.predict_proba([crop for _, crop in pending], mirrored=mirrored)
        for (sample, crop), p in zip(pending, probs):
            truth = labels.index(sample.label)
            if int(p.argmax()) != truth:
                scored.mistake_crops[len(scored.samples)] = crop
            scored.samples.append(sample)
            scored.truth.append(truth)
            scored.probs.append(p)
        pending.clear()

    for path, faces in by_file.items():
        try:
            image = load_rgb(path)
        except ImageLoadError as error:
            problems.append(str(error))
            continue
        for sample in faces:
            try:
                pending.append((sample, face_crop(image, sample, classifier)))
            except ValueError as error:
                problems.append(f"{path}: {error}")
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return scored, problems


def face_crop(image: np.ndarray, sample: Sample, classifier: OnnxMaskClassifier) -> np.ndarray:
    if sample.box is None:
        return classifier.face_file_crop(image)
    return crop_face(image, sample.box, margin=classifier.info.margin, size=classifier.info.input_size)


def evaluate_source(
    source: Path,
    classifier: OnnxMaskClassifier,
    *,
    split: str = "test",
    batch_size: int = 64,
    mirrored: bool = False,
    relabel: Sequence[Path] = (),
    skip: Sequence[Path] = (),
) -> tuple[dict, Scored, list[str]]:
    """Overall report (the keys of :func:`maskwatch.metrics.classification_report`) plus ``per_source``, ``skipped``
    (how many problem lines) and ``problems`` (the lines);
    ``relabel``: label-correction lists applied to whole-face files first (ValueError for a malformed list);
    ``skip``: files and folders of the tree left out (the run's own outputs, when they lie inside it)."""
    samples, problems = samples_of(Path(source), split, relabel, skip)
    labels = list(classifier.labels)
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        problems.append(f"{source}: classes {unknown} are not among the model's labels {labels}; skipped")
    kept = [s for s in samples if s.label in labels]
    scored, more = classify_samples(kept, classifier, batch_size=batch_size, mirrored=mirrored)
    problems += more
    if not scored.samples:  # nothing usable: scikit-learn refuses empty arrays with a traceback-only error
        return {"n": 0, "skipped": len(problems), "problems": problems, "per_source": {}}, scored, problems
    truth = np.array(scored.truth, dtype=int)
    predicted = np.array([p.argmax() for p in scored.probs], dtype=int)
    sources = np.array([s.source for s in scored.samples])
    per_source = reports_by_source(truth, predicted, sources, labels)
    result = per_source.pop("all")
    result["per_source"] = per_source
    result["skipped"] = len(problems)
    result["problems"] = problems  # the lines the log showed: what was left out of the figures, and why
    result["mirrored"] = mirrored  # one pass or crop + mirror averaged: figures of the two are not comparable
    return result, scored, problems


def by_source(result: dict) -> dict[str, dict]:
    """An :func:`evaluate_source` result as ``{"all": overall report, source: its report, ...}``: the layout of
    training's test report and of ``assets/test_metrics.json``."""
    overall = {key: value for key, value in result.items() if key not in ("per_source", "skipped", "problems")}
    return {"all": overall, **result.get("per_source", {})}


def evaluate_folder(data_dir: Path, classifier: OnnxMaskClassifier, *, batch_size: int = 64) -> tuple[dict, list[str]]:
    """Classify every face under ``data_dir`` and report; unreadable files are listed."""
    result, _, problems = evaluate_source(data_dir, classifier, batch_size=batch_size)
    return result, problems


def save_error_galleries(scored: Scored, labels: Sequence[str], folder: Path, *, per_source: int = GALLERY_SIZE) -> list[Path]:
    """One PNG per source of its test mistakes, most confident first, captioned ``true -> predicted (p)``, and
    ``mistakes.json`` listing every mistake (file, box, true and predicted class, probabilities)."""
    from maskwatch.gallery import save_grid

    by_source: dict[str, list[int]] = defaultdict(list)
    for i in scored.mistake_crops:
        by_source[scored.samples[i].source].append(i)
    written, listing = [], []
    for source, indices in sorted(by_source.items()):
        indices.sort(key=lambda i: -float(scored.probs[i].max()))
        shown = indices[:per_source]
        captions = [
            f"{labels[scored.truth[i]]} ->\n{labels[int(scored.probs[i].argmax())]} {scored.probs[i].max():.2f}\n"
            f"{scored.samples[i].path.name[:22]}"
            for i in shown
        ]
        path = folder / f"errors_{source}.png"
        title = f"{source}: {len(indices)} mistakes" + (f", the {len(shown)} most confident" if len(indices) > len(shown) else "")
        save_grid([scored.mistake_crops[i] for i in shown], captions, str(path), title=title)
        written.append(path)
        listing += [_mistake_record(scored, labels, i) for i in indices]
    mistakes = folder / MISTAKES_JSON
    write_json(mistakes, listing, indent=1)
    return [*written, mistakes]


def _mistake_record(scored: Scored, labels: Sequence[str], i: int) -> dict:
    sample = scored.samples[i]
    return {
        "path": str(sample.path),
        "source": sample.source,
        "box": list(sample.box) if sample.box else None,
        "label": sample.label,
        "predicted": labels[int(scored.probs[i].argmax())],
        "probs": {label: round(float(p), 4) for label, p in zip(labels, scored.probs[i])},
    }


#: The picture :func:`write_evaluation` draws in its folder.
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
#: What :func:`save_error_galleries` writes in its folder besides one ``errors_<source>.png`` per source.
MISTAKES_JSON = "mistakes.json"


def own_outputs_in_tree(tree: Path, json_path: Path | None, picture_dir: Path, gallery: Path | None) -> list[Path]:
    """What ``evaluate`` writes that lies strictly inside the class-folder ``tree`` it scores, to leave out of it (a
    second run finds the first run's there): the JSON, the confusion matrix, the gallery's picture and listing, and
    the highest folder around them that holds nothing else (else it would be read as a class, or an empty one). An
    output folder that holds faces (``--gallery tree/without_mask``) keeps them: only the files written are left out.
    A VOC tree reads only its annotated images: nothing to leave out."""
    from maskwatch.data.index import is_voc_root, source_name  # torch-free, but kept out of the runtime's imports

    if is_voc_root(tree):
        return []
    files = [json_path, picture_dir / CONFUSION_MATRIX_PNG]
    if gallery is not None:
        files += [gallery / MISTAKES_JSON, gallery / f"errors_{source_name(tree)}.png"]
    inside = outputs_inside(tree, [path for path in files if path is not None])
    ours = leaving_out(inside)
    for folder in (picture_dir, gallery):
        if folder is not None and outputs_inside(tree, [folder]):
            top = _highest_holding_only(tree, folder, ours)
            if top is not None:
                inside.append(str(top))
    return [Path(path) for path in dict.fromkeys(inside)]


def _highest_holding_only(tree: Path, folder: Path, ours: LeftOut) -> Path | None:
    """The highest folder from ``tree`` (excluded) down to ``folder`` that holds nothing but ``ours``, if any."""
    relative = os.path.relpath(os.path.abspath(folder), os.path.abspath(tree))
    if relative.startswith(os.pardir):  # reached through a link: compare the resolved paths
        relative = os.path.relpath(os.path.realpath(folder), os.path.realpath(tree))
    parts = Path(relative).parts
    for depth in range(1, len(parts) + 1):
        candidate = Path(tree, *parts[:depth])
        if _holds_only(candidate, ours):
            return candidate
    return None


def _holds_only(folder: Path, ours: LeftOut) -> bool:
    return all(
        is_system_file(path) or is_left_out(path, ours) for path in folder.rglob("*") if path.is_file() or path.is_symlink()
    )


def write_evaluation(result: dict, json_path: Path | None, picture_dir: Path) -> list[Path]:
    """Write the JSON report and the confusion-matrix PNG; return the files written."""
    written = []
    if json_path is not None:
        written.append(write_json(json_path, result))
    png = picture_dir / CONFUSION_MATRIX_PNG
    plot_confusion_matrix(
        result["confusion_matrix"], result["labels"], str(png), f"n={result['n']}  accuracy {result['accuracy']:.4f}"
    )
    written.append(png)
    return written
