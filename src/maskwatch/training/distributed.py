"""Several processes (GPUs, machines) training one model under ``torchrun``, with DistributedDataParallel.

Everything here is a no-op for a plain single-process run (``WORLD_SIZE`` unset or 1): no process group, no wrapper,
the same batches, random draws and numbers as before. Under ``torchrun`` each process (rank) trains on an interleaved
shard of every batch, DDP averages the gradients, validation logits are gathered by index so each epoch's figures count
the whole val split once, and rank 0 alone decides early stopping and writes files.

``batch_size`` stays the global batch (faces per optimizer step, all ranks together): each rank takes
``ceil(batch_size / world_size)`` of it, so the learning rate, the step count and the cosine schedule of a recipe mean
the same on 1 or N processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 for a plain run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The place torchrun gives this process in RANK / WORLD_SIZE / LOCAL_RANK (rank 0 of 1 without torchrun)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def start(device: str) -> tuple[World, str]:
    """Join the process group when torchrun started several processes; return the world and this rank's device.

    NCCL for CUDA, gloo for the CPU; the rendezvous address comes from torchrun's environment (MASTER_ADDR/PORT).
    Ranks other than 0 log warnings only, so a run's log is written once.
    """
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.startswith("cuda"):
        torch.cuda.set_device(world.local_rank)
        device = f"cuda:{world.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    if not world.main:
        logging.getLogger("maskwatch").setLevel(logging.WARNING)
    log.info("rank %d of %d (%s, %s)", world.rank, world.size, dist.get_backend(), device)
    return world, device


def stop(world: World) -> None:
    """Leave the process group. No barrier: ranks other than 0 leave after the last collective while rank 0 still
    scores the test split, and a rank that failed must exit (torchrun then stops the others) rather than wait."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 and in a plain run: the process that writes the run folder."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shard(positions: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's rows of ``positions``: every ``size``-th, starting at ``rank`` (no padding; for evaluation)."""
    return positions[world.rank :: world.size]


def shard_epoch(order: torch.Tensor, world: World) -> torch.Tensor:
    """DistributedSampler over an epoch's permutation: pad it with its own head to a multiple of the world size (every
    rank then takes as many steps, which DDP needs) and take every ``size``-th item from ``rank``.

    Batch ``k`` of rank ``r`` is items ``r, r+size, ...`` of the padded order's ``k``-th block of
    ``per_rank_batch * size``: with ``batch_size`` divisible by the world size, the ranks' batches together are
    exactly the single-process batches (the last one plus at most ``size - 1`` repeated faces).
    """
    if not world.distributed:
        return order
    padded_length = math.ceil(len(order) / world.size) * world.size
    repeats = math.ceil(padded_length / max(len(order), 1))
    padded = order.repeat(repeats)[:padded_length]
    return padded[world.rank :: world.size]


def per_rank_batch(batch_size: int, world: World) -> int:
    """Faces per step on each rank, so that the ranks together take ``batch_size`` (rounded up)."""
    return math.ceil(batch_size / world.size)


def rank_share(values: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's entries of a per-face draw made for the whole global batch (the draw is the same on every rank)."""
    return values[world.rank :: world.size]


def rank_seed(seed: int, world: World) -> int:
    """A seed for draws that must differ between ranks (augmenting different faces); rank 0 keeps ``seed``."""
    return seed + 1_000_003 * world.rank


def gather_rows(local: torch.Tensor, total: int, world: World) -> torch.Tensor:
    """Reassemble rows that each rank computed for its :func:`shard` of ``total`` positions, in order, on every rank.

    all_gather needs equal shapes, so shards are padded to ``ceil(total / size)`` rows; the padding is dropped by
    index, so no row is counted twice.
    """
    if not world.distributed:
        return local
    rows = math.ceil(total / world.size)
    device = _comm_device()
    padded = torch.zeros((rows, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: len(local)] = local.to(device)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    out = torch.empty((total, *local.shape[1:]), dtype=local.dtype)
    for rank, part in enumerate(parts):
        out[rank :: world.size] = part[: len(range(rank, total, world.size))].cpu()
    return out


def sum_over_ranks(*values: float) -> list[float]:
    """Sums of per-rank counters (loss sum, correct, seen): the epoch's train figures over all ranks."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision taken once: early stopping, the resume state, the report)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def sync_buffers(module: nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, after an epoch's last step.

    DDP broadcasts them before each forward, but the last forward of an epoch then updates each rank's copy from its
    own share of the batch; without this, ranks would validate (and end) with slightly different statistics.
    """
    if not world.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers: equal on every rank when DDP kept them in step."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def digests_of_all_ranks(module: nn.Module) -> list[str]:
    """Every rank's :func:`weights_digest`, in rank order (one entry in a plain run)."""
    mine = weights_digest(module)
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


class TrainableTop(nn.Module):
    """The trainable part (top blocks + head) as one module returning (activations, logits).

    DDP averages gradients only for work done inside its own ``forward``; focus guidance also needs the activations,
    hence both outputs. The ops are those the single-process loop ran, so its numbers do not change.
    """

    def __init__(self, top: nn.Module, head: nn.Module):
        super().__init__()
        self.top = top
        self.head = head

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activations = self.top(features)
        return activations, self.head(activations)


def wrap_trainable(model: nn.Module, world: World) -> nn.Module:
    """The module that training steps call: the plain :class:`TrainableTop`, or it inside DDP for several ranks.

    BatchNorm across ranks: on CUDA the top's BatchNorm layers become SyncBatchNorm, so that batch statistics are
    those of the whole global batch (as in one process). SyncBatchNorm does not run on the CPU, so with gloo DDP's
    ``forward_sync_buffers`` (formerly ``broadcast_buffers``) copies rank 0's running statistics to every rank before each forward: the running
    statistics (what eval mode and the exported model use) stay equal, while each rank normalises its training
    batch with its own batch statistics.
    """
    trainable = TrainableTop(model.top, model.head)
    if not world.distributed:
        return trainable
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        model.top = nn.SyncBatchNorm.convert_sync_batchnorm(model.top)
        trainable.top = model.top
    device_ids = [torch.cuda.current_device()] if cuda else None
    return nn.parallel.DistributedDataParallel(trainable, device_ids=device_ids, forward_sync_buffers=True)


def speedups(model: nn.Module, device: torch.device, mixed_precision: bool) -> bool:
    """Channels-last memory layout on CUDA when mixed precision is on; returns whether bf16 autocast applies.

    Only on CUDA: CPU runs keep float32 and the default layout, so their numbers stay as they were.
    """
    use = mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()
    if use:
        model.to(memory_format=torch.channels_last)
    return use


@contextmanager
def autocast(enabled: bool) -> Iterator[None]:
    """bf16 autocast on CUDA when ``enabled`` (bf16 keeps float32's range: no loss scaling needed)."""
    with torch.autocast("cuda", dtype=torch.bfloat16) if enabled else nullcontext():
        yield


def channels_last(batch: torch.Tensor, enabled: bool) -> torch.Tensor:
    return batch.contiguous(memory_format=torch.channels_last) if enabled and batch.dim() == 4 else batch


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
