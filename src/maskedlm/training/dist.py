"""Where a process sits in a ``torchrun`` job, and the reductions the loops need."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # from_env initialised the process group (close() ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> DistInfo:
        """Initialise the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":  # a rank uses its local GPU; one process keeps the GPU it names
            dev = torch.device("cuda", local if world > 1 or dev.index is None else dev.index)
            torch.cuda.set_device(dev)
        owns = world > 1 and not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                    store=_attempt_store(rank, world), rank=rank, world_size=world)
        return cls(rank, world, local, dev, owns)

    def close(self) -> None:
        """End the process group :meth:`from_env` started (one it found is left alone).
        Left to the interpreter's exit, gloo's threads sometimes died with "terminate
        called without an active exception" and a non-zero exit of a finished rank."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def _attempt_store(rank: int, world: int) -> dist.Store | None:
    """torchrun's store, with keys of this restart attempt only (None: use env:// as is).

    torchrun shares one rendezvous TCPStore across restarts (torch 2.13), so after
    ``--max-restarts`` the new workers read the dead attempt's gloo addresses and fail
    with "connectFullMesh ... Connection refused"; a prefix per attempt keeps them apart.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return None
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "False") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent, multi_tenant=not agent)
    return dist.PrefixStore(f"maskedlm/attempt_{attempt}", store)


def all_reduce(values: list[float], di: DistInfo) -> list[float]:
    """Each value summed over the ranks (unchanged in one process)."""
    if di.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=di.device if di.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flags: list[bool], di: DistInfo) -> list[bool]:
    """Whether each flag holds on any rank (so that all ranks stop at the same step)."""
    if di.world_size == 1:
        return flags
    return [v > 0 for v in all_reduce([float(f) for f in flags], di)]


def barrier(di: DistInfo) -> None:
    if di.world_size > 1:
        dist.barrier()



def broadcast_parameters(model: nn.Module, di: DistInfo) -> None:
    """Rank 0's parameters and buffers on every rank (a no-op in one process)."""
    if di.world_size == 1:
        return
    for t in [*model.parameters(), *model.buffers()]:
        dist.broadcast(t.data, src=0)


def all_reduce_gradients(model: nn.Module, di: DistInfo, average: bool = True) -> None:
    """Every rank's gradients summed (``average``: then divided by the ranks), in one
    flat all-reduce: data parallelism for a loop without a DDP wrapper (fine-tuning,
    whose gradient-cached contrastive loss runs the encoder outside any wrapper's forward)."""
    if di.world_size == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    if average:
        flat /= di.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
