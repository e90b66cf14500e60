"""Classification metrics, calibration and their pictures - numpy, plus scikit-learn and matplotlib.

Shared by training (every epoch) and ``maskwatch evaluate`` (the runtime, no torch), so the two
report numbers computed the same way. scikit-learn and matplotlib (the ``eval`` extra) are imported
inside the functions that need them: the classifier takes :func:`softmax` from here, and ``detect``
must not pay for (or need) either.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from maskwatch.fileio import save_figure


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Every label of the model is reported, including those absent from ``y_true``: predictions of
    an absent class still count as errors, and macro-F1 averages over the classes present.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=indices, zero_division=0)
    present = [i for i in indices if support[i] > 0]
    macro_f1 = float(np.mean(f1[present])) if present else 0.0
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": macro_f1,
        "macro_precision": float(np.mean(precision[present])) if present else 0.0,
        "macro_recall": float(np.mean(recall[present])) if present else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=indices).tolist(),
    }


#: The per-source key of a source named "all", which is the key of the overall figures.
SOURCE_NAMED_ALL = "all (source)"


def reports_by_source(
    y_true: Sequence[int], y_pred: Sequence[int], sources: Sequence[str], labels: Sequence[str]
) -> dict[str, dict]:
    """:func:`classification_report` over all faces (key ``"all"``), then over each source's faces, sources sorted.

    Training's test report, ``maskwatch evaluate``, the model study and the shipping recipe all score per source;
    one function keeps their figures comparable (same faces per source, same order of keys). A source that is itself
    named ``all`` (a folder called so) is keyed ``all (source)``, so that it cannot overwrite the overall figures.
    """
    y_true, y_pred, sources = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int), np.asarray(sources)
    reports = {"all": classification_report(y_true, y_pred, labels)}
    for source in sorted(set(sources.tolist())):
        keep = sources == source
        reports[SOURCE_NAMED_ALL if source == "all" else source] = classification_report(y_true[keep], y_pred[keep], labels)
    return reports


def softmax(logits: np.ndarray, temperature: float = 1.0, offsets: Sequence[float] | None = None) -> np.ndarray:
    """``softmax(logits / temperature + offsets)``: the model's calibrated probabilities, ``offsets`` being the
    per-class prior correction of :func:`prior_offsets` (none for models trained without class weights)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if offsets is not None:
        z = z + np.asarray(offsets, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y_true: Sequence[int], bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def prior_offsets(class_weights: Sequence[float]) -> list[float]:
    """Per-class logit offsets that undo a class-weighted loss at inference (logit adjustment).

    A model trained with loss weight ``w_k`` on class ``k`` estimates probabilities proportional to ``w_k p(k | x)``:
    inverse-frequency weights make it call a rare class as if every class were equally common. Adding ``-log w_k`` to
    the calibrated logits undoes the weighting (approximately: label smoothing and oversampled sources shift the class
    mix a model saw a little). Centred, so that a model trained without weights gets zeros."""
    weights = np.asarray(class_weights, dtype=np.float64)
    if not np.all(weights > 0) or not np.all(np.isfinite(weights)):
        raise ValueError(f"class weights must be positive, got {list(class_weights)}")
    log_w = np.log(weights)
    return [round(float(v), 6) for v in log_w.mean() - log_w]


def read_logit_offsets(meta: dict) -> tuple[float, ...]:
    """A model's ``logit_offsets`` metadata, checked: one finite number per label; zeros when the key is absent (models
    made before the prior correction). Raises ValueError naming the key, for the loader to prefix with the file."""
    labels = meta.get("labels")
    if not isinstance(labels, list):
        raise ValueError("labels must be a list")
    value = meta.get("logit_offsets")
    if value is None:
        return (0.0,) * len(labels)
    if (
        not isinstance(value, list)
        or len(value) != len(labels)
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) for v in value)
    ):
        raise ValueError(f"logit_offsets must list one finite number per label ({len(labels)}), got {str(value)[:80]}")
    return tuple(float(v) for v in value)


def fit_temperature(logits: np.ndarray, y_true: Sequence[int], offsets: Sequence[float] | None = None) -> float:
    """The temperature minimising validation negative log-likelihood (1-D search on log T), with ``offsets`` (the
    prior correction, see :func:`softmax`) in place as they will be at inference."""
    y_true = np.asarray(y_true, dtype=int)
    if len(y_true) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)), offsets)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-12, None))))

    grid = np.linspace(np.log(0.05), np.log(20.0), 121)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.linspace(best - 0.05, best + 0.05, 41)
    return float(np.exp(fine[int(np.argmin([nll(t) for t in fine]))]))


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str, title: str = "") -> None:
    """Save a confusion matrix (counts, rows = truth) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(cm):
        colour = "white" if value > cm.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=colour)
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_history(history: Sequence[dict], path: str) -> None:
    """Save training curves (loss, accuracy, macro-F1 per epoch, train vs val) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    for ax, key in zip(axes, ("loss", "accuracy", "macro_f1")):
        for split in ("train", "val"):  # history.json writes a missing value (NaN) as null
            ax.plot(epochs, [np.nan if row[f"{split}_{key}"] is None else row[f"{split}_{key}"] for row in history], label=split)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
