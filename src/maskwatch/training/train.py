"""The training recipe: index -> split -> cache trunk features -> fine-tune the top -> report.

On a 2-core CPU, running a frozen ImageNet trunk once per image (and a few augmented views of each
training face) costs minutes; after that each epoch trains only the last blocks and the head on
cached features, which takes seconds. With ``cache_views=0`` the whole network sees fresh
augmentations every epoch instead (better on a GPU, or when fine-tuning every block).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors

from maskwatch.data.corrections import apply_label_corrections, read_label_corrections
from maskwatch.data.index import index_sources
from maskwatch.data.loading import LoadedSamples, assign_splits, box_cut_crops, load_samples
from maskwatch.data.splits import SplitFractions, read_manifest, write_manifest
from maskwatch.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from maskwatch.fileio import atomic_path, atomic_write, write_json
from maskwatch.labels import LABELS
from maskwatch.metrics import (
    SOURCE_NAMED_ALL,
    classification_report,
    expected_calibration_error,
    fit_temperature,
    prior_offsets,
    reports_by_source,
    softmax,
)
from maskwatch.progress import track
from maskwatch.training import distributed as ddp
from maskwatch.training.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint, torch_threads
from maskwatch.training.config import TrainConfig
from maskwatch.training.focus_guidance import cam_focus, class_maps, focus_penalty, lower_face_masks, pool_masks
from maskwatch.training.models import MaskClassifierNet, build_model, count_parameters, resplit

log = logging.getLogger(__name__)


def read_exclusions(files: tuple[str, ...]) -> dict[str, set[Path]]:
    """Entries (one path per line, '#' starts a reason) of known-mislabelled files to leave out, each with the real
    paths it may name: relative to the working folder (the repository root, for the recipes) or to the list's own
    folder. Matching is by exact resolved path: a suffix test would let ``1.jpg`` exclude ``11.jpg``."""
    excluded: dict[str, set[Path]] = {}
    for file in files:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as error:
            raise ValueError(f"--exclude {file}: cannot read ({error.strerror or error})") from None
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if entry:
                excluded[entry] = {Path(entry).resolve(), (Path(file).parent / entry).resolve()}
    return excluded


def apply_exclusions(samples: list, excluded: dict[str, set[Path]]) -> tuple[list, list[str]]:
    """Samples whose file no entry names, and the entries that named no sample (each worth a warning: a typo or a
    moved file would otherwise quietly keep a mislabelled image in training)."""
    wanted: dict[Path, list[str]] = {}
    for entry, paths in excluded.items():  # one file may be named by several entries (two lists, two spellings)
        for path in paths:
            wanted.setdefault(path, []).append(entry)
    used: set[str] = set()
    kept = []
    for sample in samples:
        entries = wanted.get(Path(sample.path).resolve())
        if entries is None:
            kept.append(sample)
        else:
            used.update(entries)
    return kept, [entry for entry in excluded if entry not in used]


def relabelled(samples: list, files: tuple[str, ...], where: str) -> list:
    """``samples`` with the corrections of the ``--relabel`` lists applied; a correction naming no file is logged."""
    if not files:
        return samples
    corrected, unmatched = apply_label_corrections(samples, read_label_corrections(files))
    for entry in unmatched:
        log.warning("--relabel: %s matches no whole-face file in %s; check the path (relative to %s)", entry, where, Path.cwd())
    changed = sum(a.label != b.label for a, b in zip(samples, corrected))
    log.info("%d faces relabelled by %s", changed, ", ".join(files))
    return corrected


def prepare_data(config: TrainConfig) -> tuple[LoadedSamples, list[str], list[str]]:
    """Index and load every source, drop excluded files; return samples, splits and problems."""
    if config.splits:
        return _reuse_splits(config)
    report = index_sources([Path(p) for p in config.data], min_face=config.min_face)
    samples, unmatched = apply_exclusions(report.samples, read_exclusions(config.exclude))
    for entry in unmatched:
        log.warning("--exclude: %s matches no file in the data; check the path (relative to %s)", entry, Path.cwd())
    samples = relabelled(samples, config.relabel, "the data")
    loaded = load_samples(samples, size=config.input_size, margin=config.margin, whole_image=config.whole_image)
    problems = report.problems + loaded.problems
    for problem in problems:
        log.warning("%s", problem)
    log.info(
        "%s; %d excluded as mislabelled; %d unreadable",
        report.summary(),
        len(report.samples) - len(samples),
        len(loaded.problems),
    )
    rows = assign_splits(
        loaded,
        fractions=SplitFractions(config.val_fraction, config.test_fraction),
        seed=config.seed,
        roots=[Path(p) for p in config.data],
    )
    if ddp.is_main():
        write_manifest(rows, Path(config.out) / "splits.csv")
    return loaded, [row.split for row in rows], problems


def _reuse_splits(config: TrainConfig) -> tuple[LoadedSamples, list[str], list[str]]:
    """Load exactly the samples and splits of an earlier run's manifest."""
    rows = read_manifest(Path(config.splits))
    excluded = read_exclusions(config.exclude)
    if excluded:
        samples, unmatched = apply_exclusions([r.sample for r in rows], excluded)
        for entry in unmatched:
            log.warning("--exclude: %s matches no file in %s; check the path (relative to %s)", entry, config.splits, Path.cwd())
        kept_ids = {id(sample) for sample in samples}
        log.info("%d of %d manifest faces excluded as mislabelled", len(rows) - len(samples), len(rows))
        rows = [r for r in rows if id(r.sample) in kept_ids]
    if config.relabel:
        corrected = relabelled([r.sample for r in rows], config.relabel, str(config.splits))
        rows = [dataclasses.replace(r, sample=sample) for r, sample in zip(rows, corrected)]
    loaded = load_samples(
        [r.sample for r in rows], size=config.input_size, margin=config.margin, hash_files=False, whole_image=config.whole_image
    )
    split_of = {(r.sample.path, r.sample.box): r.split for r in rows}
    kept = {(s.path, s.box) for s in loaded.samples}
    if ddp.is_main():
        write_manifest([r for r in rows if (r.sample.path, r.sample.box) in kept], Path(config.out) / "splits.csv")
    for problem in loaded.problems:
        log.warning("%s", problem)
    return loaded, [split_of[(s.path, s.box)] for s in loaded.samples], loaded.problems


def to_batch(crops: np.ndarray, transform) -> torch.Tensor:
    return torch.stack([transform(crop) for crop in crops])


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def augment_batch(crops: np.ndarray, masks: np.ndarray | None, transform) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Transform crops, and their lower-face masks through the same geometry (torchvision moves tv_tensors.Mask along)."""
    if masks is None:
        return to_batch(crops, transform), None
    pairs = [transform(crop, tv_tensors.Mask(torch.from_numpy(mask))) for crop, mask in zip(crops, masks)]
    return torch.stack([image for image, _ in pairs]), pool_masks(torch.stack([mask for _, mask in pairs]))


@torch.no_grad()
def cache_features(
    model: MaskClassifierNet, crops: np.ndarray, transform, batch_size: int, what: str, masks: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the frozen trunk over ``crops`` once and keep the result (float16 to halve memory), with the
    lower-face masks moved by the same augmentation when ``masks`` is given."""
    model.eval()
    parts, mask_parts = [], []
    starts = range(0, len(crops), batch_size)
    device = device_of(model)
    for start in track(starts, description=f"caching {what}", total=len(starts)):
        stop = start + batch_size
        batch, batch_masks = augment_batch(crops[start:stop], None if masks is None else masks[start:stop], transform)
        parts.append(model.trunk(batch.to(device)).half().cpu())
        mask_parts.append(batch_masks)
    if not parts:
        return torch.zeros(0), None
    return torch.cat(parts), (torch.cat(mask_parts) if masks is not None else None)


def cache_sharded(
    model: MaskClassifierNet,
    crops: np.ndarray,
    transform,
    batch_size: int,
    what: str,
    world: ddp.World,
    masks: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`cache_features` with each rank caching every N-th crop, then the parts gathered onto every rank."""
    if not world.distributed:
        return cache_features(model, crops, transform, batch_size, what, masks=masks)
    part = ddp.shard(np.arange(len(crops)), world)
    features, part_masks = cache_features(model, crops[part], transform, batch_size, what, None if masks is None else masks[part])
    features = ddp.gather_rows(features, len(crops), world)
    return features, None if part_masks is None else ddp.gather_rows(part_masks, len(crops), world)


def epoch_order(pool: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """A shuffled pass over ``pool`` (train positions, with repeats for oversampled faces)."""
    return torch.from_numpy(pool)[torch.randperm(len(pool), generator=generator)]


def class_weights(labels: np.ndarray, num_classes: int, scheme: str) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    if scheme == "none":
        weights = np.ones(num_classes)
    elif scheme == "inverse":
        weights = counts.sum() / (num_classes * counts)
    elif scheme == "sqrt_inverse":
        weights = np.sqrt(counts.sum() / (num_classes * counts))
    else:
        raise ValueError(f"class_weighting {scheme!r}: choose none, inverse or sqrt_inverse")
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


@torch.no_grad()
def predicted_focus(
    model: MaskClassifierNet,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    *,
    on_features: bool,
    offsets: Sequence[float] | None = None,
) -> np.ndarray:
    """Focus score of each face's CAM for its predicted class (``offsets``, the prior correction, applied) - what
    ``maskwatch explain --report`` measures."""
    model.eval()
    device = device_of(model)
    shift = torch.tensor(list(offsets or [0.0] * len(LABELS)), dtype=torch.float32, device=device)
    scores = []
    for i in range(0, len(inputs), 256):
        batch = inputs[i : i + 256].to(device).float()
        activations = model.top(batch if on_features else model.trunk(batch))
        classes = (model.head(activations).float() + shift).argmax(1)
        scores.append(cam_focus(activations, model.head[-1], classes, masks[i : i + 256].to(device)).cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)


def face_masks(loaded: LoadedSamples, margin: float, positions: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Lower-face masks for the crops at ``positions`` (default: all), from CenterFace landmarks as ``maskwatch explain``
    places them, and the share placed from landmarks."""
    from maskwatch.runtime.detectors import make_detector

    detector = make_detector("centerface", input_size=0, threshold=0.3)
    positions = np.arange(len(loaded.samples)) if positions is None else positions
    margins = [margin if loaded.samples[i].box is not None else None for i in positions]
    return lower_face_masks(loaded.crops[positions], margins, detector)


def focus_summary(focus: np.ndarray, labels: np.ndarray, sources: np.ndarray, names: list[str]) -> dict:
    """Median/mean focus per source and true class - the layout of ``maskwatch explain --report``'s ``per_source``."""
    summary: dict = {}
    for key, in_source in [("all", np.ones(len(sources), bool))] + [
        (SOURCE_NAMED_ALL if source == "all" else source, sources == source) for source in sorted(set(sources))
    ]:
        for k, name in enumerate(names):
            values = focus[in_source & (labels == k)]
            if len(values):
                summary.setdefault(key, {})[name] = {
                    "n": int(len(values)),
                    "median_focus": float(np.median(values)),
                    "mean_focus": float(np.mean(values)),
                }
    return summary


@torch.no_grad()
def predict_logits(model: MaskClassifierNet, inputs: torch.Tensor, *, on_features: bool, batch_size: int = 256) -> np.ndarray:
    model.eval()
    forward = model.forward_top if on_features else model
    device = device_of(model)
    out = [forward(inputs[i : i + batch_size].to(device).float()).cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.head[-1].out_features), np.float32)


def photo_incorrect_recall(logits: np.ndarray, truth: np.ndarray, from_photos: np.ndarray) -> float:
    """Recall of ``mask_incorrect`` on the faces cut from scene photos (real masks, not synthetic ones); NaN if none."""
    incorrect = LABELS.index("mask_incorrect")
    real = from_photos & (truth == incorrect)
    return float((logits[real].argmax(1) == incorrect).mean()) if real.any() else float("nan")


def last_macro_f1_gain(history: list[dict]) -> int:
    """The epoch with the best val macro-F1 so far. Patience counts from it, not from the kept epoch: with a recall
    floor the kept epoch can be an early one, and stopping on it would end a run whose macro-F1 is still climbing."""
    return max(history, key=lambda row: row["val_macro_f1"])["epoch"]


def selection_score(row: dict, incorrect_recall_floor: float) -> tuple[float, float]:
    """Epochs are compared on (reaches the real-photo mask_incorrect recall floor, val macro-F1): macro-F1 decides
    among epochs on the same side of the floor, and any epoch that reaches it beats every epoch that does not."""
    recall = row.get("val_recall_mask_incorrect_photos")  # NaN, or null once written to history.json: no such faces
    reaches = incorrect_recall_floor <= 0 or (recall is not None and recall == recall and recall >= incorrect_recall_floor)
    return (1.0 if reaches else 0.0, row["val_macro_f1"])


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Same config, same weights: some CPU backward kernels (those under the focus loss among them) otherwise sum in
    an order that varies from run to run, and 8 epochs turn that into a different best epoch. Restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def train(config: TrainConfig) -> dict:
    """Run the whole recipe and return the final report (also written to ``out/report.json``).

    Under ``torchrun`` with several processes this is one rank's part (see :mod:`maskwatch.training.distributed`);
    ranks other than 0 return only ``rank``, ``world_size`` and ``weights_digest_per_rank``.
    """
    world, device = ddp.start(config.device)
    try:
        with deterministic_algorithms():
            return _train(config, world, torch.device(device))
    finally:
        ddp.stop(world)


def _train(config: TrainConfig, world: ddp.World, device: torch.device) -> dict:
    """The recipe as a sequence of named steps; each one is importable and testable alone."""
    started = time.perf_counter()
    run = prepare_run(config, world, device)
    progress = resume(run, device)
    fit(run, progress)
    digests = ddp.digests_of_all_ranks(run.model)
    if not world.main:
        return {"rank": world.rank, "world_size": world.size, "weights_digest_per_rank": digests}
    return report_run(run, progress.best_epoch, time.perf_counter() - started, digests, device)


def prepare_run(config: TrainConfig, world: ddp.World, device: torch.device) -> Run:
    """Everything the epochs need: run folder, data and splits, model, focus masks, cached inputs, optimiser, metadata."""
    out = start_run(config, world)
    data = prepare_splits(config)
    model = prepare_model(config, device)
    amp = ddp.speedups(model, device, config.mixed_precision)
    focus = prepare_focus_masks(config, data.loaded)
    return Run(
        config=config,
        world=world,
        out=out,
        data=data,
        model=model,
        inputs=prepare_inputs(model, data, config, world, focus),
        focus=focus,
        optimisation=make_optimisation(model, config, data.y[data.idx["train"]], world, device),
        meta=run_meta(config, len(model.top), data.y[data.idx["train"]]),
        amp=amp,
    )


def start_run(config: TrainConfig, world: ddp.World) -> Path:
    """Threads, the run folder with its config.json (rank 0), and the seed; returns the run folder."""
    torch_threads(config.threads)
    out = Path(config.out)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", asdict(config))
    torch.manual_seed(config.seed)
    return out


@dataclass(frozen=True)
class TrainData:
    """Every loaded face, its class index ``y``, the positions of each split in ``idx``, and the loading problems."""

    loaded: LoadedSamples
    y: np.ndarray
    idx: dict[str, np.ndarray]
    problems: list[str]

    def from_photos(self, split: str) -> np.ndarray:
        """Which faces of ``split`` were cut from scene photos (they have a box) rather than read as whole files."""
        return np.array([self.loaded.samples[i].box is not None for i in self.idx[split]])


def split_positions(loaded: LoadedSamples, splits: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(class index of every face, positions of the train/val/test faces)."""
    label_index = {label: i for i, label in enumerate(LABELS)}
    y = np.array([label_index[s.label] for s in loaded.samples])
    split = np.array(splits)
    return y, {name: np.nonzero(split == name)[0] for name in ("train", "val", "test")}


def with_box_cut_copies(
    loaded: LoadedSamples, splits: list[str], config: TrainConfig
) -> tuple[LoadedSamples, list[str], list[str]]:
    """Add a box-exact copy of every train scene face (:func:`maskwatch.data.loading.box_cut_crops`) to the train split;
    returns the samples, their splits and the copies that could not be made. Crop sets cut at annotated boxes reach
    ``evaluate`` with replicated borders where training only ever showed real faces with the photo around them, and
    whole-face files with such borders only from sources without real incorrectly worn masks. Val and test keep their
    one cut each, so their figures stay comparable between runs; the run's splits.csv (written before) lists no copy."""
    train = [i for i, split in enumerate(splits) if split == "train"]
    positions, crops, problems = box_cut_crops(
        [loaded.samples[i] for i in train], size=config.input_size, margin=config.margin, whole_image=config.whole_image
    )
    for problem in problems:
        log.warning("%s", problem)
    copies = [loaded.samples[train[i]] for i in positions]
    log.info("box-exact copies: %d train scene faces", len(copies))
    merged = LoadedSamples(
        loaded.samples + copies, np.concatenate([loaded.crops, crops]), loaded.file_hashes, loaded.problems + problems
    )
    return merged, splits + ["train"] * len(copies), problems


def prepare_splits(config: TrainConfig) -> TrainData:
    """:func:`prepare_data` as class indices and split positions; refuses data without train and val faces."""
    loaded, splits, problems = prepare_data(config)
    if config.box_cut_copies:
        loaded, splits, copy_problems = with_box_cut_copies(loaded, splits, config)
        problems = problems + copy_problems
    y, idx = split_positions(loaded, splits)
    log.info("split sizes: %s", {k: len(v) for k, v in idx.items()})
    if len(idx["train"]) == 0 or len(idx["val"]) == 0:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in idx.items())
        raise ValueError(f"{', '.join(config.data)}: {len(y)} usable faces ({sizes}); training needs train and val faces")
    return TrainData(loaded, y, idx, problems)


def prepare_model(config: TrainConfig, device: torch.device) -> MaskClassifierNet:
    """The network to train, on ``device``: a fresh ImageNet-initialised one, or ``--init``'s checkpoint."""
    if config.init is not None:
        model, init_meta = load_checkpoint(resolve_checkpoint(config.init))
        if init_meta["labels"] != list(LABELS) or init_meta["model"] != config.model:
            raise ValueError(f"--init checkpoint is a {init_meta['model']} over {init_meta['labels']}")
        if config.trainable_blocks is not None:
            resplit(model, config.trainable_blocks)
        model.train()
    else:
        model = build_model(config.model, len(LABELS), pretrained=config.pretrained, trainable_blocks=config.trainable_blocks)
    return model.to(device)


@dataclass(frozen=True)
class FocusMasks:
    """Focus guidance's lower-face masks: at crop size (moved with each augmentation) and pooled to the CAM grid."""

    masks: np.ndarray
    pooled: torch.Tensor


def prepare_focus_masks(config: TrainConfig, loaded: LoadedSamples) -> FocusMasks | None:
    """Every face's lower-face mask when focus guidance is on (CenterFace landmarks, else the template); else None."""
    if config.focus_weight <= 0:
        return None
    masks, landmark_share = face_masks(loaded, config.margin)
    log.info(
        "focus guidance: weight %g, goal %.2f; %.1f%% of regions from landmarks",
        config.focus_weight,
        config.focus_goal,
        100 * landmark_share,
    )
    return FocusMasks(masks, pool_masks(torch.from_numpy(masks)))


@dataclass(frozen=True)
class ModelInputs:
    """What the trainable top sees: every face once, cleanly (trunk features, or image tensors when ``on_features``
    is False), and the cached train views (clean first, then ``cache_views`` augmented ones) with their masks."""

    inputs: torch.Tensor
    on_features: bool
    train_views: torch.Tensor | None = None  # (N_train, V+1, C, H, W)
    train_mask_views: torch.Tensor | None = None  # (N_train, V+1, G, G)


def prepare_inputs(
    model: MaskClassifierNet, data: TrainData, config: TrainConfig, world: ddp.World, focus: FocusMasks | None
) -> ModelInputs:
    """Cache the frozen trunk's features of every clean face and of ``cache_views`` augmented train views (each rank
    a share), or, without caching, keep the clean image tensors for the whole network to see."""
    if not (config.cache_views > 0 and len(model.trunk) > 0):
        return ModelInputs(to_batch(data.loaded.crops, eval_transform()), on_features=False)
    train = data.idx["train"]
    augment = train_transform(size=config.input_size)
    inputs, _ = cache_sharded(model, data.loaded.crops, eval_transform(), config.batch_size, "clean faces", world)
    views, mask_views = [inputs[train]], [focus.pooled[train]] if focus else []
    for view in range(config.cache_views):
        torch.manual_seed(ddp.rank_seed(config.seed * 1000 + view, world))
        features, view_masks = cache_sharded(
            model,
            data.loaded.crops[train],
            augment,
            config.batch_size,
            f"augmented view {view + 1}/{config.cache_views}",
            world,
            masks=focus.masks[train] if focus else None,
        )
        views.append(features)
        mask_views.append(view_masks)
    return ModelInputs(
        inputs,
        on_features=True,
        train_views=torch.stack(views, dim=1),
        train_mask_views=torch.stack(mask_views, dim=1) if focus else None,
    )


@dataclass(frozen=True)
class Optimisation:
    """The loss, the step module (the DDP-wrapped top under torchrun), the optimiser and its schedule."""

    criterion: nn.Module
    step: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def make_optimisation(
    model: MaskClassifierNet, config: TrainConfig, train_labels: np.ndarray, world: ddp.World, device: torch.device
) -> Optimisation:
    """Class-weighted, label-smoothed cross-entropy; Adam over the trainable parameters with a cosine schedule."""
    criterion = nn.CrossEntropyLoss(
        weight=class_weights(train_labels, len(LABELS), config.class_weighting).to(device),
        label_smoothing=config.label_smoothing,
    )
    step = ddp.wrap_trainable(model, world)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return Optimisation(criterion, step, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs))


def run_meta(config: TrainConfig, trainable_blocks: int, train_labels: np.ndarray) -> dict:
    """The checkpoint's metadata: what export writes into the ONNX file for the runtime to read. The prior correction
    (``logit_offsets``) comes from the class weights the loss uses on ``train_labels``."""
    weights = class_weights(train_labels, len(LABELS), config.class_weighting).numpy()
    return {
        "model": config.model,
        "labels": list(LABELS),
        "input_size": config.input_size,
        "margin": config.margin,
        "whole_image": config.whole_image,
        "trainable_blocks": trainable_blocks,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "temperature": 1.0,
        "logit_offsets": prior_offsets(weights) if config.prior_correction else [0.0] * len(LABELS),
    }


@dataclass(frozen=True)
class Run:
    """One training run's parts, as the steps after preparation share them."""

    config: TrainConfig
    world: ddp.World
    out: Path
    data: TrainData
    model: MaskClassifierNet
    inputs: ModelInputs
    focus: FocusMasks | None
    optimisation: Optimisation
    meta: dict
    amp: bool


@dataclass
class Progress:
    """Where the epochs stand: every epoch's figures, the kept epoch and its score, where to go on, and early stop."""

    history: list[dict] = field(default_factory=list)
    best_score: tuple[float, float] = (-1.0, -1.0)
    best_epoch: int = 0
    start_epoch: int = 1
    stopped: bool = False


def resume(run: Run, device: torch.device) -> Progress:
    """The progress saved in ``last.pt`` (read by rank 0, shared with all), loaded into the model, optimiser and
    schedule; a fresh :class:`Progress` when there is none."""
    last_path = run.out / "last.pt"
    world = run.world
    state = ddp.from_main(
        load_last_state(last_path, torch.device("cpu") if world.distributed else device) if world.main else None
    )
    if state is None:
        return Progress()
    run.model.load_state_dict(state["model"])
    run.optimisation.optimizer.load_state_dict(state["optimizer"])
    run.optimisation.scheduler.load_state_dict(state["scheduler"])
    progress = Progress(
        history=state["history"],
        best_score=tuple(state["best_score"]) if "best_score" in state else (1.0, state["best_f1"]),
        best_epoch=state["best_epoch"],
        start_epoch=state["epoch"] + 1,
        stopped=bool(state.get("stopped_early", False)),
    )
    if progress.stopped:
        log.info("%s: this run already stopped early at epoch %d; not training further", last_path, state["epoch"])
    else:
        log.info("resuming from %s at epoch %d", last_path, progress.start_epoch)
    return progress


def train_set(run: Run) -> TrainSet:
    """Where the epochs draw their faces from: the cached views, or the crops augmented online."""
    focus = run.focus
    return TrainSet(
        targets=torch.from_numpy(run.data.y)[run.data.idx["train"]],
        views=run.inputs.train_views,
        mask_views=run.inputs.train_mask_views,
        crops=run.data.loaded.crops,
        positions=run.data.idx["train"],
        masks=focus.masks if focus else None,
        augment=train_transform(size=run.config.input_size),
        trunk=run.model.trunk,
    )


def epoch_pool(data: TrainData, scene_oversample: int) -> np.ndarray:
    """Positions into the train split; scene faces (the most camera-like) repeated ``scene_oversample`` times."""
    is_scene = data.from_photos("train")
    return np.concatenate([np.arange(len(data.idx["train"]))] + [np.nonzero(is_scene)[0]] * max(0, scene_oversample - 1))


def fit(run: Run, progress: Progress) -> Progress:
    """Train epoch by epoch from ``progress.start_epoch``, keeping the best checkpoint and ``last.pt``, until the
    last epoch or early stop."""
    config = run.config
    source, pool = train_set(run), epoch_pool(run.data, config.scene_oversample)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(progress.start_epoch, 0 if progress.stopped else config.epochs + 1):
        torch.manual_seed(config.seed + epoch)
        run.model.train()
        order = ddp.shard_epoch(epoch_order(pool, generator.manual_seed(config.seed + epoch)), run.world)
        row = epoch_figures(run, source, order, epoch)
        if record_epoch(run, progress, row, epoch):
            log.info("early stop: no val macro-F1 gain for %d epochs", config.patience)
            break
    return progress


def epoch_figures(run: Run, source: TrainSet, order: torch.Tensor, epoch: int) -> dict:
    """Train one epoch, step the schedule, and measure on val: the epoch's row of history.json."""
    opt, model, inputs, data = run.optimisation, run.model, run.inputs, run.data
    figures = train_one_epoch(opt.step, model, opt.optimizer, opt.criterion, source, order, run.config, run.world, run.amp, epoch)
    opt.scheduler.step()
    row = {"epoch": epoch, "lr": opt.scheduler.get_last_lr()[0], **figures}
    val = data.idx["val"]
    offsets = run.meta.get("logit_offsets")
    row.update(
        validate(
            model, opt.criterion, inputs.inputs, data.y, val, data.from_photos("val"), inputs.on_features, run.world, offsets
        )
    )
    if run.focus is not None:
        row["train_mean_focus"] = row.pop("train_mean_focus")  # after the val figures, where it always was
        val_focus = sharded(
            lambda part: predicted_focus(
                model, inputs.inputs[part], run.focus.pooled[part], on_features=inputs.on_features, offsets=offsets
            ),
            val,
            run.world,
        )
        row["val_median_focus"] = float(np.median(val_focus))
        row["val_empty_cam_share"] = float(np.mean(val_focus <= 0))  # no positive evidence at all: no map to show
    return row


def record_epoch(run: Run, progress: Progress, row: dict, epoch: int) -> bool:
    """Add the epoch to the history, keep its weights if it is the best so far, save history and ``last.pt`` (rank 0);
    return whether to stop early (decided once, on rank 0)."""
    progress.history.append(row)
    score = selection_score(row, run.config.incorrect_recall_floor)
    improved = score > progress.best_score
    if improved:
        progress.best_score, progress.best_epoch = score, epoch
        if run.world.main:
            save_checkpoint(run.model, run.meta, run.out / "best.safetensors")
    log_epoch(row, improved, run.focus is not None)
    progress.stopped = ddp.from_main(epoch - last_macro_f1_gain(progress.history) >= run.config.patience)
    if run.world.main:
        write_history(progress.history, run.out)
        opt = run.optimisation
        save_last_state(
            run.model,
            opt.optimizer,
            opt.scheduler,
            progress.history,
            progress.best_score,
            progress.best_epoch,
            epoch,
            progress.stopped,
            run.out / "last.pt",
        )
    return progress.stopped


def report_run(run: Run, best_epoch: int, train_seconds: float, digests: list, device: torch.device) -> dict:
    """Rank 0: reload the kept weights, calibrate and score them (:func:`finish`), add the run's facts, write report.json."""
    model, meta = load_checkpoint(run.out / "best.safetensors")
    model.to(device)
    data = run.data
    focus_masks = run.focus.pooled if run.focus else None
    report = finish(model, meta, run.inputs.inputs, data.y, data.idx, data.loaded, run.inputs.on_features, run.out, focus_masks)
    report.update(
        best_epoch=best_epoch,
        train_seconds=round(train_seconds, 1),
        problems=len(data.problems),
        parameters=count_parameters(model),
        split_sizes={k: int(len(v)) for k, v in data.idx.items()},
        world_size=run.world.size,
        weights_digest_per_rank=digests,
    )
    write_json(run.out / "report.json", report)
    return report


@dataclass(frozen=True)
class TrainSet:
    """Where a training step's faces come from: cached trunk features (``views``) or crops augmented online."""

    targets: torch.Tensor  # label of each train-split face
    views: torch.Tensor | None  # (N_train, V+1, C, H, W) cached features, or None to augment online
    mask_views: torch.Tensor | None  # (N_train, V+1, G, G) lower-face masks moved with each cached view
    crops: np.ndarray  # every loaded crop; ``positions`` says which are the train split's
    positions: np.ndarray
    masks: np.ndarray | None  # every crop's lower-face mask (focus guidance only)
    augment: Callable
    trunk: nn.Module

    def batch(self, pick: torch.Tensor, world: ddp.World) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Top inputs and lower-face masks for the faces at ``pick`` (positions into the train split).

        The cached view of each face is drawn for the whole global batch and each rank takes its share, so the ranks
        together draw what one process draws (and keep the random stream in step).
        """
        if self.views is not None:
            view = ddp.rank_share(torch.randint(0, self.views.shape[1], (len(pick) * world.size,)), world)
            return self.views[pick, view].float(), None if self.mask_views is None else self.mask_views[pick, view]
        where = self.positions[pick.numpy()]
        return augment_batch(self.crops[where], None if self.masks is None else self.masks[where], self.augment)


def train_one_epoch(
    step: nn.Module,
    model: MaskClassifierNet,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    source: TrainSet,
    order: torch.Tensor,
    config: TrainConfig,
    world: ddp.World,
    amp: bool,
    epoch: int,
) -> dict:
    """One pass over this rank's ``order``; train loss/accuracy (and focus) summed over all ranks."""
    device = device_of(model)
    guided = config.focus_weight > 0
    total_loss, correct, seen, focus_sum = 0.0, 0, 0, 0.0
    size = ddp.per_rank_batch(config.batch_size, world)
    batches = range(0, len(order), size)
    for start in track(batches, description=f"epoch {epoch}/{config.epochs}", total=len(batches)):
        pick = order[start : start + size]
        targets = source.targets[pick].to(device)
        features, batch_masks = source.batch(pick, world)
        with ddp.autocast(amp):
            if source.views is None:
                features = source.trunk(ddp.channels_last(features.to(device), amp))
            activations, logits = step(ddp.channels_last(features.to(device), amp))
            loss = criterion(logits, targets)
            if guided:
                maps = class_maps(activations, model.head[-1], targets)
                penalty, focus = focus_penalty(
                    maps, batch_masks.to(device), goal=config.focus_goal, min_evidence=config.focus_min_evidence
                )
                loss = loss + config.focus_weight * penalty
                focus_sum += float(focus.detach().sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(pick)
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(pick)
    ddp.sync_buffers(model.top, world)
    total_loss, correct, seen, focus_sum = ddp.sum_over_ranks(total_loss, correct, seen, focus_sum)
    figures = {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1), "train_macro_f1": float("nan")}
    return {**figures, "train_mean_focus": focus_sum / max(seen, 1)} if guided else figures


def sharded(predict: Callable[[np.ndarray], np.ndarray], positions: np.ndarray, world: ddp.World) -> np.ndarray:
    """``predict`` over ``positions``, each rank doing its share; every rank gets all rows, in order, each once."""
    if not world.distributed:
        return predict(positions)
    local = torch.from_numpy(predict(ddp.shard(positions, world)))
    return ddp.gather_rows(local, len(positions), world).numpy()


def validate(
    model: MaskClassifierNet,
    criterion: nn.Module,
    inputs: torch.Tensor,
    y: np.ndarray,
    val: np.ndarray,
    from_photos: np.ndarray,
    on_features: bool,
    world: ddp.World,
    offsets: Sequence[float] | None = None,
) -> dict:
    """The epoch's validation figures over the whole val split (logits gathered from every rank by index). The loss is
    the training loss; classes are decided with the prior correction's ``offsets`` added (at temperature 1, as the
    temperature is fitted after training), so the kept epoch and its recall floor are those of the deployed model."""
    logits = sharded(lambda part: predict_logits(model, inputs[part], on_features=on_features), val, world)
    decided = logits + np.asarray(offsets, np.float32) if offsets is not None else logits
    report = classification_report(y[val], decided.argmax(1), LABELS)
    device = device_of(model)
    return {
        "val_loss": float(criterion(torch.from_numpy(logits).to(device), torch.from_numpy(y[val]).to(device))),
        "val_accuracy": report["accuracy"],
        "val_macro_f1": report["macro_f1"],
        "val_macro_precision": report["macro_precision"],
        "val_macro_recall": report["macro_recall"],
        **{f"val_f1_{k}": v["f1"] for k, v in report["per_class"].items()},
        **{f"val_precision_{k}": v["precision"] for k, v in report["per_class"].items()},
        **{f"val_recall_{k}": v["recall"] for k, v in report["per_class"].items()},
        "val_recall_mask_incorrect_photos": photo_incorrect_recall(decided, y[val], from_photos),
    }


def log_epoch(row: dict, improved: bool, guided: bool) -> None:
    log.info(
        "epoch %2d  train loss %.4f acc %.4f | val loss %.4f acc %.4f P %.3f R %.3f macro-F1 %.4f incorrect recall (photos) %.3f%s%s",
        row["epoch"],
        row["train_loss"],
        row["train_accuracy"],
        row["val_loss"],
        row["val_accuracy"],
        row["val_macro_precision"],
        row["val_macro_recall"],
        row["val_macro_f1"],
        row["val_recall_mask_incorrect_photos"],
        f" focus {row['val_median_focus']:.3f} (empty {row['val_empty_cam_share']:.1%})" if guided else "",
        "  *best" if improved else "",
    )


def save_last_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    history: list[dict],
    best_score: tuple[float, float],
    best_epoch: int,
    epoch: int,
    stopped: bool,
    path: Path,
) -> None:
    """``last.pt``, atomically: what running the same command again needs to go on where this epoch ended."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "history": history,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "epoch": epoch,
        "stopped_early": stopped,  # so that running the same command again does not train on
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def finish(model, meta, inputs, y, idx, loaded, on_features, out: Path, focus_masks: torch.Tensor | None = None) -> dict:
    """Calibrate on val, score the test split overall and per source (accuracy and Grad-CAM focus), save pictures and model.

    ``focus_masks`` are the pooled lower-face masks of every sample when training already made them; otherwise the
    test faces' masks are made here (CenterFace, about a second per hundred faces).
    """
    from maskwatch.metrics import plot_confusion_matrix, plot_history

    val_logits = predict_logits(model, inputs[idx["val"]], on_features=on_features)
    offsets = meta.get("logit_offsets")  # checkpoints from before the prior correction have none
    temperature = fit_temperature(val_logits, y[idx["val"]], offsets)
    ece_before = expected_calibration_error(softmax(val_logits), y[idx["val"]])
    ece_after = expected_calibration_error(softmax(val_logits, temperature, offsets), y[idx["val"]])
    meta = {**meta, "temperature": temperature}
    save_checkpoint(model, meta, out / "best.safetensors")
    log.info("temperature %.3f, logit offsets %s: val ECE %.4f -> %.4f", temperature, offsets, ece_before, ece_after)
    val_plain = classification_report(y[idx["val"]], val_logits.argmax(1), LABELS)["macro_f1"]
    val_corrected = classification_report(y[idx["val"]], softmax(val_logits, temperature, offsets).argmax(1), LABELS)
    log.info("val macro-F1 %.4f on the plain logits, %.4f calibrated as deployed", val_plain, val_corrected["macro_f1"])

    test_logits = predict_logits(model, inputs[idx["test"]], on_features=on_features)
    sources = np.array([loaded.samples[i].source for i in idx["test"]])
    test_predicted = softmax(test_logits, temperature, offsets).argmax(1)
    report = {
        "temperature": temperature,
        "logit_offsets": offsets,
        "val_ece_before": ece_before,
        "val_ece_after": ece_after,
        "val_macro_f1_plain": val_plain,
        "val_macro_f1_deployed": val_corrected["macro_f1"],
        "test": reports_by_source(y[idx["test"]], test_predicted, sources, meta["labels"]),
    }
    for source, result in report["test"].items():
        plot_confusion_matrix(result["confusion_matrix"], meta["labels"], str(out / f"confusion_{source}.png"), f"test: {source}")
        log.info("test %-16s n=%4d accuracy %.4f macro-F1 %.4f", source, result["n"], result["accuracy"], result["macro_f1"])
    if focus_masks is not None:
        test_masks = focus_masks[idx["test"]]
    else:
        test_masks = pool_masks(torch.from_numpy(face_masks(loaded, meta["margin"], idx["test"])[0]))
    focus = predicted_focus(model, inputs[idx["test"]], test_masks, on_features=on_features, offsets=offsets)
    report["test_focus"] = focus_summary(focus, y[idx["test"]], sources, meta["labels"])
    for label, row in report["test_focus"].get("all", {}).items():
        log.info("test focus %-14s n=%4d median %.3f mean %.3f", label, row["n"], row["median_focus"], row["mean_focus"])
    history = json.loads((out / "history.json").read_text())
    plot_history(history, str(out / "curves.png"))
    save_gradcam_grid(model, meta, loaded.crops[idx["test"]], y[idx["test"]], out / "gradcam_test.png")
    return report


def save_gradcam_grid(model, meta: dict, crops: np.ndarray, truth: np.ndarray, path: Path) -> None:
    """Where the model looks on right and wrong test faces; skipped (with a note) without the grad-cam package."""
    try:
        from maskwatch.explain.gradcam import Explainer
        from maskwatch.explain.report import training_gradcam_grid
    except ImportError as error:
        log.warning("no Grad-CAM grid in the report (%s); pip install 'maskwatch[train]'", error)
        return
    model.cpu()
    explainer = Explainer(model, meta["labels"], meta["temperature"], meta.get("logit_offsets"))
    training_gradcam_grid(explainer, crops, truth, path)


def load_last_state(path: Path, device: torch.device) -> dict | None:
    """The resume state in ``last.pt``, or None (with one warning line) when it is missing or unusable.

    Writes are atomic, so a damaged file comes from elsewhere (a full disk, a copy cut short); it must not make every
    later run of the same command crash, so the run starts from epoch 1 and the file is overwritten after it.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        missing = {"model", "optimizer", "scheduler", "history", "best_epoch", "epoch"} - set(state)
        if "best_score" not in state and "best_f1" not in state:
            missing.add("best_score")
        if missing:
            raise ValueError(f"missing {sorted(missing)}")
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for a damaged file
        log.warning("%s: cannot resume from it (%s); starting from epoch 1", path, str(error).splitlines()[0][:160])
        return None
    return state


def write_history(history: list[dict], out: Path) -> None:
    """history.json (strict JSON: NaN written as null) and metrics.csv, each replaced atomically."""
    write_json(out / "history.json", history, indent=1)
    with atomic_write(out / "metrics.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
