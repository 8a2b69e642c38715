"""Calibration images for reduced precision, run through the card's own preprocessing, and the
top-1 agreement that guards a reduced-precision path.

``calibration`` (``Predictor(calibration=...)``, ``omnizoo predict --calibration DIR``):

* ``None``: the built-in set, scikit-image's sample photographs (:data:`BUILTIN`; the demo
  photos in ``examples/images`` are copies of four of them), each used whole, centre-cropped to
  80% and both mirrored: 48 images. It needs scikit-image; without it, pass a folder;
* a folder: its image files (recursive, sorted), at most :data:`MAX_IMAGES`; files that cannot
  be decoded are left out with a warning;
* a sequence of images (paths, bytes, PIL images, tensors), as ``Predictor.predict`` takes.

A set is identified by :attr:`CalibrationSet.digest`, the sha256 of the preprocessed batches,
so a measurement recorded for one set is never reused for another (or for another
preprocessing of the same files).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, DependencyError, ImageLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["BUILTIN", "MAX_IMAGES", "CalibrationSet", "calibration_set", "top1_agreement"]

log = logging.getLogger("omnizoo.predict")

#: scikit-image sample images of the built-in set (photographs first; all ship with it).
BUILTIN = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "camera",
    "coins",
    "moon",
    "horse",
)
#: The most images taken from a calibration folder.
MAX_IMAGES = 512
_BATCH = 16


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration batches, what they are, and their digest."""

    batches: list[torch.Tensor]
    description: str
    digest: str

    @property
    def count(self) -> int:
        return sum(int(b.shape[0]) for b in self.batches)


def builtin_images() -> list[Any]:
    """The built-in calibration images (PIL, RGB): each sample photograph whole, centre-cropped
    to 80%, and both mirrored."""
    try:
        import skimage.data as samples
    except ImportError as exc:
        raise DependencyError(
            "the built-in calibration images are scikit-image's sample photographs: pip "
            "install scikit-image, or pass calibration= a folder of images like yours "
            "(omnizoo predict --calibration DIR)"
        ) from exc
    from PIL import Image, ImageOps

    images = []
    for name in BUILTIN:
        try:
            pixels = getattr(samples, name)()
        except Exception as exc:  # a trimmed install without some files: use the others
            log.debug("skipping the calibration image %s: %s", name, exc)
            continue
        whole = Image.fromarray(pixels).convert("RGB")
        w, h = whole.size
        crop = whole.crop((w // 10, h // 10, w - w // 10, h - h // 10))
        images += [whole, crop, ImageOps.mirror(whole), ImageOps.mirror(crop)]
    if len(images) < 8:
        raise ConfigurationError(
            "scikit-image's sample photographs are missing from this install; pass "
            "calibration= a folder of images (--calibration DIR)"
        )
    return images


def calibration_set(
    calibration: Any, prepare: Callable[[Any], torch.Tensor], *, batch_size: int = _BATCH
) -> CalibrationSet:
    """The calibration images of ``calibration`` (see the module docstring) through
    ``prepare`` (the Predictor's own per-image preprocessing), in batches."""
    import torch

    if calibration is None:
        images: Sequence[Any] = builtin_images()
        what = "built-in calibration images (scikit-image sample photographs)"
    elif isinstance(calibration, (str, os.PathLike)):
        from ..data.stats import iter_image_files

        files = iter_image_files(calibration)
        if len(files) > MAX_IMAGES:
            log.info("calibrating on the first %d of %d images", MAX_IMAGES, len(files))
        images = files[:MAX_IMAGES]
        what = f"calibration images from {os.fspath(calibration)}"
    else:
        images = list(calibration)[:MAX_IMAGES]
        what = "calibration images given"
    prepared = []
    for image in images:
        try:
            prepared.append(prepare(image))
        except ImageLoadError as exc:
            log.warning("leaving out a calibration image: %s", exc)
    if not prepared:
        raise ConfigurationError(
            f"no readable calibration image in {calibration!r}: give a folder of images "
            "(--calibration DIR)"
        )
    batches = [
        torch.stack(prepared[i : i + batch_size]) for i in range(0, len(prepared), batch_size)
    ]
    digest = hashlib.sha256()
    for batch in batches:
        b = batch.detach().float().cpu().contiguous()
        digest.update(repr(tuple(b.shape)).encode())
        digest.update(b.numpy().tobytes())
    return CalibrationSet(batches, f"{len(prepared)} {what}", digest.hexdigest())


def top1_agreement(
    reference: Callable[[Any], torch.Tensor],
    candidate: Callable[[Any], torch.Tensor],
    batches: Sequence[torch.Tensor],
) -> tuple[int, int]:
    """``(images whose top-1 class is the same, images)`` of two runners on ``batches``."""
    same = total = 0
    for batch in batches:
        a = reference(batch).argmax(dim=1)
        b = candidate(batch).argmax(dim=1)
        same += int((a == b).sum())
        total += int(a.shape[0])
    return same, total
