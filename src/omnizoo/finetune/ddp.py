"""The process group :func:`omnizoo.finetune.fit` trains in: one process, torchrun, or Ray Train.

:func:`join` returns a :class:`World`. Under ``torchrun`` (``torch.distributed`` reports a
torchelastic launch) it joins the default process group itself (gloo on CPU, NCCL on CUDA),
reading the rendezvous from the environment through ``torch.distributed`` (``env://``);
under Ray Train the group already exists. omnizoo itself reads no environment variable here.

The **local rank** (which process of a node) is found by comparing host names across the
group, not read from ``LOCAL_RANK``: :func:`once_per_node` lets the first process of every
node resolve the weights (a download, a cache check) while the others wait at a barrier, then
reuse the verified cache entry. Without the barrier the cache would still download once (its
lock), but every process would start a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["World", "join", "once_per_node"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """``rank`` of ``size`` processes (``local_rank`` on its node); ``owned``: this call
    created the process group (and :meth:`leave` destroys it)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (float64 on the CPU: gloo and exact counts)."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return [float(v) for v in t.cpu().tolist()]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (a picklable object), in rank order, on every process."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def leave(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def join(device: Any) -> World:
    """The process group this process belongs to (see the module docstring)."""
    import torch.distributed as dist

    if not dist.is_available():
        return World()
    owned = False
    if not dist.is_initialized():
        if not dist.is_torchelastic_launched():
            return World()
        backend = "nccl" if getattr(device, "type", str(device)) == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owned = True
    rank, size = dist.get_rank(), dist.get_world_size()
    if size == 1:
        return World(owned=owned)
    from ..weights.fsafe import HOST

    hosts: list[Any] = [None] * size
    dist.all_gather_object(hosts, HOST)
    local_rank = sum(1 for r in range(rank) if hosts[r] == HOST)
    return World(rank=rank, size=size, local_rank=local_rank, owned=owned)


def once_per_node(world: World, fetch: Callable[[], T]) -> T:
    """``fetch()`` on the first process of each node first, then on the others."""
    if not world.distributed:
        return fetch()
    result = fetch() if world.local_rank == 0 else None
    world.barrier()
    return result if world.local_rank == 0 else fetch()  # type: ignore[return-value]
