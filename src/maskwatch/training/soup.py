"""Average the weights of several fine-tunes of one starting model (a "model soup"), and score models on val.

Runs of one recipe that differ only in their seed end a few faces apart on each small split, and which of them does
best on test changes from run to run. Fine-tunes that start from the same weights stay in one basin of the loss, so
their weights can be averaged (Wortsman et al., "Model soups", ICML 2022): the average tends to do at least as well as
its members and to vary less. ``weighted_state_dict`` is also the two-model blend of WiSE-FT
(benchmarks/weight_interpolation.py).

BatchNorm: the members' running means and variances describe their own weights' activations, not the average's.
:func:`recompute_batchnorm` measures them again for the trainable blocks, as stochastic weight averaging does
(``torch.optim.swa_utils.update_bn``); the frozen trunk is the same in every member and keeps its statistics. Measured
on the soup of three seeds of recipes/box_cut_copies.yaml (val, fp32, one pass): statistics measured again on clean
train crops gave macro-F1 0.9563, the members' averaged ones 0.9585. The members' came from augmented views, the
distribution their weights were trained on, so measuring on clean crops moved them away from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskwatch.data.loading import load_samples
from maskwatch.data.splits import read_manifest
from maskwatch.data.transforms import eval_transform
from maskwatch.labels import LABELS
from maskwatch.metrics import classification_report, read_logit_offsets
from maskwatch.training.checkpoint import CheckpointError, load_checkpoint
from maskwatch.training.models import MaskClassifierNet, resplit
from maskwatch.training.train import photo_incorrect_recall, read_exclusions, to_batch

# What a checkpoint's input looks like: members that differ here did not see the same crops and cannot be averaged.
SAME_INPUT = ("model", "labels", "input_size", "margin", "whole_image", "mean", "std")


def weighted_state_dict(state_dicts: Sequence[dict], weights: Sequence[float]) -> dict:
    """Sum of ``weight * tensor`` over the members, key by key; integer buffers (BatchNorm's batch counter) come from
    the first member, as an average of counts means nothing."""
    if not state_dicts or len(state_dicts) != len(weights):
        raise ValueError(f"{len(state_dicts)} state dicts for {len(weights)} weights")
    first = state_dicts[0]
    for index, other in enumerate(state_dicts[1:], start=1):
        if other.keys() != first.keys():
            missing = sorted(set(first) ^ set(other))[:3]
            raise ValueError(f"member {index} names other tensors than member 0 (e.g. {missing})")
    return {
        key: sum(w * sd[key] for w, sd in zip(weights, state_dicts)) if tensor.is_floating_point() else tensor.clone()
        for key, tensor in first.items()
    }


def average_checkpoints(paths: Sequence[Path]) -> tuple[MaskClassifierNet, dict]:
    """The uniform soup of ``paths``: one model whose every float tensor is the members' mean.

    Members are re-cut at the first one's frozen/trainable split so that their tensors carry the same names; the
    metadata is the first member's, with the members listed and its temperature dropped: the caller fits the soup's
    own on val before saving it. Members are assumed to be fine-tunes of one start (nothing here can check that)."""
    if len(paths) < 2:
        raise CheckpointError(f"a soup needs at least two checkpoints, got {len(paths)}")
    members = [load_checkpoint(Path(p)) for p in paths]
    model, meta = members[0]
    for path, (_, other) in zip(paths[1:], members[1:]):
        for key in SAME_INPUT:
            if other.get(key) != meta.get(key):
                raise CheckpointError(f"{path}: {key} is {other.get(key)!r}, {paths[0]} has {meta.get(key)!r}")
        if read_logit_offsets(other) != read_logit_offsets(meta):  # other class weights: another recipe
            raise CheckpointError(f"{path}: logit_offsets differ from {paths[0]}'s (trained with other class weights)")
    for member, _ in members[1:]:
        resplit(member, len(model.top))
    weight = 1.0 / len(members)
    model.load_state_dict(weighted_state_dict([m.state_dict() for m, _ in members], [weight] * len(members)))
    soup_meta = {k: v for k, v in meta.items() if k != "temperature"}
    soup_meta["soup"] = {"members": [str(p) for p in paths], "weights": [weight] * len(members)}
    return model.eval(), soup_meta


def recompute_batchnorm(model: MaskClassifierNet, images: torch.Tensor, batch_size: int = 256) -> None:
    """Measure the running statistics of the BatchNorm layers in ``model.top`` again, as a plain average over
    ``images`` (torch's ``update_bn``), with the trunk frozen as in training; the model is left in eval mode."""
    model.eval()

    def trunk_features():
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                yield model.trunk(images[start : start + batch_size].float())

    torch.optim.swa_utils.update_bn(trunk_features(), model.top)
    model.eval()


@dataclass(frozen=True)
class SplitFaces:
    """The faces of one split, ready for the network: inputs, true class indices, the source of each face and whether
    it was cut from a photo (a scene face with a box, as training's recall floor counts them)."""

    inputs: torch.Tensor
    truth: np.ndarray
    sources: np.ndarray
    from_photos: np.ndarray


def split_faces(splits: Path, exclude: str | Sequence[str] | None, meta: dict, split: str = "val") -> SplitFaces:
    """The manifest's ``split`` rows minus the files ``exclude`` lists (one list file or several), cut and normalised the
    way ``meta``'s model was trained."""
    files = (exclude,) if isinstance(exclude, str) else tuple(exclude or ())
    excluded = set().union(*read_exclusions(files).values()) if files else set()
    samples = [
        row.sample for row in read_manifest(splits) if row.split == split and Path(row.sample.path).resolve() not in excluded
    ]
    loaded = load_samples(samples, size=meta["input_size"], margin=meta["margin"], whole_image=meta["whole_image"])
    truth = np.array([LABELS.index(s.label) for s in loaded.samples])
    sources = np.array([s.source for s in loaded.samples])
    from_photos = np.array([s.box is not None for s in loaded.samples])
    return SplitFaces(to_batch(loaded.crops, eval_transform()), truth, sources, from_photos)


def score_logits(logits: np.ndarray, faces: SplitFaces) -> dict:
    """Pooled macro-F1 and accuracy, `mask_incorrect` recall on faces from scene photos, and accuracy per source."""
    report = classification_report(faces.truth, logits.argmax(1), LABELS)
    row = {
        "macro_f1": report["macro_f1"],
        "accuracy": report["accuracy"],
        "photo_incorrect_recall": photo_incorrect_recall(logits, faces.truth, faces.from_photos),
    }
    for source in sorted(set(faces.sources)):
        part = faces.sources == source
        row[f"{source}_accuracy"] = float((logits[part].argmax(1) == faces.truth[part]).mean())
    return row
