"""Images to batches for fine-tuning: a dataset whose augmentation depends only on (seed,
epoch, image), the per-epoch order, and a collate that sets unreadable images aside.

Why the augmentation is seeded per image: a resumed run must see exactly the crops and flips
the uninterrupted run saw, whatever the number of loader workers and wherever the run
stopped. Each image's transform runs under its own generator state, derived from ``(seed,
epoch, index)``, inside :func:`torch.random.fork_rng` (the global state, which dropout and
drop-path use, is left alone).

>>> epoch_order(10, seed=0, epoch=0, rank=0, world=2) == epoch_order(10, 0, 0, 0, 2)
True
>>> sorted(epoch_order(10, 0, 1, 0, 2) + epoch_order(10, 0, 1, 1, 2)) == list(range(10))
True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Bad", "Batch", "ImageSet", "collate", "epoch_order", "shard"]


@dataclass(frozen=True)
class Bad:
    """An image that could not be read or transformed (recorded in ``bad_images.jsonl``)."""

    path: str
    error: str


@dataclass
class Batch:
    """Stacked images and labels (None when every image of the batch was bad) and the bad
    ones set aside."""

    images: Any
    labels: Any
    bad: list[Bad]

    def __len__(self) -> int:
        return 0 if self.labels is None else int(self.labels.shape[0])


class ImageSet:
    """``(path, class index)`` pairs decoded with :func:`omnizoo.data.images.load_image` and
    transformed by ``transform``; an unreadable image comes back as a :class:`Bad`."""

    def __init__(
        self,
        items: Sequence[tuple[str, int]],
        transform: Callable[[Any], Any],
        *,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        self.items = list(items)
        self.transform = transform
        self.seed = int(seed)
        self.augment = augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int] | Bad:
        import torch

        from ..data.images import load_image

        path, label = self.items[index]
        try:
            image = load_image(path)
            if not self.augment:
                return self.transform(image), label
            # one generator state per (seed, epoch, image): see the module docstring
            key = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
            state = random.getstate()
            try:
                with torch.random.fork_rng(devices=[]):
                    # the CPU generator only: torch.manual_seed also seeds (lazily) every
                    # accelerator, which costs more than the transform of a small image
                    torch.default_generator.manual_seed(key % (1 << 63))
                    random.seed(key)
                    return self.transform(image), label
            finally:
                random.setstate(state)
        except Exception as exc:  # a bad file must not stop the run: it is recorded
            return Bad(str(path), f"{type(exc).__name__}: {exc}")


def collate(samples: list[tuple[Any, int] | Bad]) -> Batch:
    """Stack the good samples; keep the bad ones aside."""
    import torch

    good = [s for s in samples if not isinstance(s, Bad)]
    bad = [s for s in samples if isinstance(s, Bad)]
    if not good:
        return Batch(None, None, bad)
    images = torch.stack([g[0] for g in good])
    labels = torch.tensor([g[1] for g in good], dtype=torch.long)
    return Batch(images, labels, bad)


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's training indices for ``epoch``: one seeded permutation of ``range(n)``,
    padded by wrapping to a multiple of ``world`` and dealt round-robin (as
    ``torch.utils.data.DistributedSampler`` does, so one process and many see one order)."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    per_rank = -(-n // world)
    order += order[: per_rank * world - n]
    return order[rank::world]


def shard(n: int, rank: int, world: int) -> list[int]:
    """This rank's validation indices: every image exactly once across the ranks."""
    return list(range(rank, n, world))
