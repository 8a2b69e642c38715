"""scikit-learn's 8x8 ``digits`` (bundled with scikit-learn, no download) written as an
ImageFolder of upscaled RGB PNGs: real, offline data that a small network learns in a few
epochs on the CPU."""

from __future__ import annotations

from pathlib import Path


def write_digits(
    root: Path, size: int = 32, *, per_class: int | None = None, classes: int = 10
) -> Path:
    """``root/<digit>/<index>.png`` for the first ``classes`` digits (``per_class`` images
    each, or all ~180); returns ``root``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict[int, int] = {}
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(target)
        if label >= classes or (per_class is not None and counts.get(label, 0) >= per_class):
            continue
        counts[label] = counts.get(label, 0) + 1
        gray = (pixels / 16.0 * 255).round().astype(np.uint8)
        image = Image.fromarray(gray, "L").resize((size, size), Image.BILINEAR).convert("RGB")
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:04d}.png")
    return root
