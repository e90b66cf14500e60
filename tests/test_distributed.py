"""Issue 14: training under torchrun (DDP) - epoch sharding, and a real 2-process gloo run on the CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from maskwatch.training.distributed import World, per_rank_batch, rank_share, shard_epoch  # noqa: E402


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("length", [17, 18])
def test_rank_shards_cover_the_epoch_once_and_rebuild_the_single_process_batches(size: int, length: int):
    order = torch.randperm(length, generator=torch.Generator().manual_seed(0))
    shards = [shard_epoch(order, World(rank, size)) for rank in range(size)]
    assert len({len(s) for s in shards}) == 1  # every rank takes as many steps (DDP needs that)
    taken = torch.cat(shards)
    assert set(taken.tolist()) == set(order.tolist())
    assert len(taken) - length < size  # padding: fewer than world_size repeated faces per epoch
    batch = 6  # divisible by 2 and 3: the global batches are the single-process batches
    step = per_rank_batch(batch, World(0, size))
    for k, start in enumerate(range(0, length, batch)):
        together = torch.stack([s[k * step : (k + 1) * step] for s in shards], 1).flatten()
        assert together[: len(order[start : start + batch])].tolist() == order[start : start + batch].tolist()
    draw = torch.arange(12)
    assert sorted(torch.cat([rank_share(draw, World(r, size)) for r in range(size)]).tolist()) == draw.tolist()


def test_a_single_process_world_changes_nothing():
    order = torch.randperm(10)
    assert shard_epoch(order, World()) is order and per_rank_batch(8, World()) == 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_ranks(config: Path, folders: list[Path], timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """``maskwatch train`` in 2 processes with torchrun's environment variables; each rank in its own working
    folder, so that a relative ``out`` shows which rank wrote what."""
    port = _free_port()
    processes = []
    for rank, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(len(folders)),
            "LOCAL_WORLD_SIZE": str(len(folders)),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, "-m", "maskwatch.cli", "train", "--config", str(config)]
        processes.append(
            subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def _val_figures_of(run: Path) -> dict:
    """Val figures of the run's best checkpoint, computed here in one process over the val rows of its splits.csv,
    the way training computes them (cached trunk features kept as float16)."""
    from maskwatch.data.loading import load_labelled_crops
    from maskwatch.data.splits import read_manifest
    from maskwatch.data.transforms import eval_transform
    from maskwatch.labels import LABELS
    from maskwatch.metrics import classification_report
    from maskwatch.training.checkpoint import load_checkpoint
    from maskwatch.training.config import load_config
    from maskwatch.training.train import class_weights, to_batch

    config = load_config(run / "config.json")
    model, meta = load_checkpoint(run / "best.safetensors")
    crops, labels = load_labelled_crops(
        run / "splits.csv", size=meta["input_size"], margin=meta["margin"], whole_image=meta["whole_image"]
    )
    train_labels = np.array([LABELS.index(r.sample.label) for r in read_manifest(run / "splits.csv") if r.split == "train"])
    criterion = torch.nn.CrossEntropyLoss(
        weight=class_weights(train_labels, len(LABELS), config.class_weighting), label_smoothing=config.label_smoothing
    )
    with torch.no_grad():
        logits = model.forward_top(model.trunk(to_batch(np.stack(crops), eval_transform())).half().float())
    truth = torch.tensor(labels)
    report = classification_report(truth.numpy(), logits.argmax(1).numpy(), LABELS)
    return {"n": len(labels), "val_loss": float(criterion(logits, truth)), "val_accuracy": report["accuracy"]}


@pytest.mark.slow
def test_two_gloo_ranks_train_in_step_and_count_the_val_split_once(tmp_path: Path):
    from tests.test_reliability_training import tiny_config

    config = tiny_config(tmp_path, Path("run"), epochs=4, batch_size=4, lr=3e-3, patience=5)  # out relative: per rank
    ranks = [tmp_path / "rank0", tmp_path / "rank1"]
    results = _run_ranks(config, ranks)
    for rank, result in enumerate(results):
        assert result.returncode == 0, f"rank {rank}: {result.stderr[-3000:]}"

    run = ranks[0] / "run"
    assert not (ranks[1] / "run").exists(), "rank 1 wrote files"
    assert {"report.json", "history.json", "metrics.csv", "best.safetensors", "last.pt", "model.onnx", "splits.csv"} <= {
        p.name for p in run.iterdir()
    }
    assert "test all" in results[0].stdout and results[1].stdout == ""  # rank 0 alone prints and exports
    report = json.loads((run / "report.json").read_text())
    assert report["world_size"] == 2
    digests = report["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1], "the ranks' weights differ after training"

    # The epoch figures are those of the whole val split, each face once (no padded duplicates).
    history = json.loads((run / "history.json").read_text())
    best = history[report["best_epoch"] - 1]
    direct = _val_figures_of(run)
    assert direct["n"] % 2 == 1, "pick data whose val split does not divide by 2, so that padding would show"
    assert best["val_accuracy"] == direct["val_accuracy"]
    assert best["val_loss"] == pytest.approx(direct["val_loss"], abs=1e-5)

    # And they are those of one process trained on the same data, within a tolerance (see the README's "Train at scale").
    from maskwatch.training.config import load_config
    from maskwatch.training.train import train

    single = train(load_config(config).replace(out=str(tmp_path / "single")))
    single_history = json.loads((tmp_path / "single" / "history.json").read_text())
    assert [row["epoch"] for row in single_history] == [row["epoch"] for row in history]
    for one, two in zip(single_history, history):
        assert two["val_accuracy"] == pytest.approx(one["val_accuracy"], abs=0.15)
        assert two["val_loss"] == pytest.approx(one["val_loss"], abs=0.15)
    assert single["world_size"] == 1 and len(single["weights_digest_per_rank"]) == 1
