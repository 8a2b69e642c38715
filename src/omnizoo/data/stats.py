"""``compute_mean_std``: per-channel mean and std of a user's own images, streamed.

Nothing is held in memory but one image (or one batch) at a time: each image contributes its
pixel count, per-channel mean and per-channel sum of squared deviations (M2), computed in
float64, and these are merged with Chan et al.'s parallel form of Welford's update::

    delta = mean_b - mean_a;  n = n_a + n_b
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

which stays accurate where the naive ``E[x^2] - E[x]^2`` loses digits. ``std`` is the
population standard deviation over all pixels, ``sqrt(M2 / n)``, in the 0-1 scale, RGB order:
the numbers a :class:`~omnizoo.values.data_config.DataConfig` takes as ``mean`` / ``std``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, ImageLoadError

__all__ = ["IMAGE_EXTENSIONS", "ChannelStats", "compute_mean_std", "iter_image_files"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of a data set (0-1 scale)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_images: int
    num_pixels: int
    skipped: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        """``mean, std = compute_mean_std(...)`` works."""
        yield self.mean
        yield self.std


class _Welford:
    def __init__(self) -> None:
        self.n = 0
        self.mean: Any = None
        self.m2: Any = None

    def add(self, n: int, mean: Any, m2: Any) -> None:
        if n == 0:
            return
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        if len(mean) != len(self.mean):
            raise ConfigurationError(
                f"images have different channel counts ({len(self.mean)} and {len(mean)})"
            )
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.n = total


def _moments_numpy(arr: Any) -> tuple[int, Any, Any]:
    """(pixels, mean, M2) of an (H, W, C) array, float64."""
    import numpy as np

    flat = arr.reshape(-1, arr.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    dev = flat - mean
    return flat.shape[0], mean, np.einsum("ij,ij->j", dev, dev)


def _moments_tensor(x: Any) -> tuple[int, Any, Any]:
    """(pixels, mean, M2) of a (C, H, W) or (N, C, H, W) tensor, float64."""
    import torch

    x = x.to(torch.float64).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float64)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ConfigurationError(
            f"expected (C, H, W) or (N, C, H, W) tensors, got {tuple(x.shape)}"
        )
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    mean = flat.mean(dim=1)
    dev = flat - mean[:, None]
    m2 = (dev * dev).sum(dim=1)
    return flat.shape[1], mean.numpy(), m2.numpy()


def iter_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, by extension)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigurationError(f"{root} is not a directory")
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def compute_mean_std(
    dataset_or_folder: Any,
    *,
    num_workers: int = 4,
    max_images: int | None = None,
    on_error: str = "skip",
) -> ChannelStats:
    """Per-channel mean and std (0-1 scale) of a folder of images or a dataset.

    ``dataset_or_folder``: a directory (searched recursively for image files, decoded with
    :func:`~omnizoo.data.images.load_image`, i.e. RGB), or any iterable / torch ``Dataset``
    yielding ``(C, H, W)`` tensors (uint8 0-255 or float 0-1), ``(tensor, label)`` pairs, PIL
    images or ``(H, W, C)`` uint8 arrays. Images may have different sizes (each pixel counts
    once). ``on_error="skip"`` leaves unreadable files out (listed in ``skipped``);
    ``"raise"`` stops at the first one.

    >>> import torch
    >>> stats = compute_mean_std([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    >>> stats.mean, stats.std
    ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    Raises:
        ConfigurationError: ``on_error`` is not "skip"/"raise", the folder is not a directory,
            no image was found, an item is not an image, or images differ in channel count.
        ImageLoadError: with ``on_error="raise"``, the first file that cannot be decoded.
    """
    if on_error not in ("skip", "raise"):
        raise ConfigurationError(f"on_error={on_error!r}; use 'skip' or 'raise'")
    acc = _Welford()
    count = 0
    skipped: list[str] = []
    if isinstance(dataset_or_folder, (str, os.PathLike)):
        files = iter_image_files(dataset_or_folder)
        if max_images is not None:
            files = files[:max_images]
        for result in _decode_moments(files, num_workers):
            if isinstance(result, ImageLoadError):
                if on_error == "raise":
                    raise result
                skipped.append(result.path or str(result))
                continue
            acc.add(*result)
            count += 1
    else:
        for item in _iter_items(dataset_or_folder):
            if max_images is not None and count >= max_images:
                break
            n, mean, m2, images = _moments_of(item)
            acc.add(n, mean, m2)
            count += images
    if acc.n == 0:
        raise ConfigurationError("no images to compute statistics over")
    std = tuple(math.sqrt(max(float(v), 0.0) / acc.n) for v in acc.m2)
    return ChannelStats(
        mean=tuple(float(v) for v in acc.mean),
        std=std,
        num_images=count,
        num_pixels=int(acc.n),
        skipped=tuple(skipped),
    )


def _decode_moments(files: list[Path], num_workers: int) -> Iterator[Any]:
    """Decode + reduce each file in a thread pool (Pillow releases the GIL), bounded window."""
    import numpy as np

    from .images import load_image

    def work(path: Path) -> Any:
        try:
            arr = np.asarray(load_image(path)).astype(np.float64) / 255.0
        except ImageLoadError as exc:
            return exc
        return _moments_numpy(arr)

    workers = max(1, int(num_workers))
    window = workers * 2
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omnizoo-stats") as pool:
        pending = []
        it = iter(files)
        for path in it:
            pending.append(pool.submit(work, path))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _iter_items(dataset: Any) -> Iterable[Any]:
    if (
        hasattr(dataset, "__len__")
        and hasattr(dataset, "__getitem__")
        and not isinstance(dataset, (list, tuple))
    ):
        return (dataset[i] for i in range(len(dataset)))
    return dataset  # type: ignore[no-any-return,unused-ignore]


def _moments_of(item: Any) -> tuple[int, Any, Any, int]:
    """(pixels, mean, M2, images) of one dataset item."""
    import numpy as np

    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    try:
        import torch

        if isinstance(item, torch.Tensor):
            images = int(item.shape[0]) if item.dim() == 4 else 1
            return (*_moments_tensor(item), images)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(item, np.ndarray):
        arr = item.astype(np.float64) / (255.0 if item.dtype == np.uint8 else 1.0)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return (*_moments_numpy(arr), 1)
    from PIL import Image

    if isinstance(item, Image.Image):
        from .images import to_rgb

        return (*_moments_numpy(np.asarray(to_rgb(item)).astype(np.float64) / 255.0), 1)
    raise ConfigurationError(
        f"dataset items must be tensors, (tensor, label) pairs, PIL images or arrays; "
        f"got {type(item).__name__}"
    )
