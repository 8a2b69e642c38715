"""How ``omnizoo predict`` prints results, per task (text and ``--json``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

__all__ = ["json_document", "print_entry", "save_mask"]


def print_entry(image: str, entry: Any, task: str, out: IO[str] | None = None) -> None:
    """One image's answer as text: top-k classes, detections, or class shares."""
    from ..inference.results import Segmentation

    out = out or sys.stdout
    if isinstance(entry, Segmentation):
        h, w = entry.size
        print(f"{image}: {w}x{h}, {len(entry.classes)} classes", file=out)
        for c in entry.classes:
            print(f"  {100 * c.share:6.2f}%  {c.label} ({c.index})", file=out)
        return
    if task in ("detection", "keypoints"):
        noun = "object" if len(entry) == 1 else "objects"
        print(f"{image}: {len(entry)} {noun}", file=out)
        for d in entry:
            box = ", ".join(f"{v:.1f}" for v in d.box)
            extra = f"  {len(d.keypoints)} keypoints" if d.keypoints else ""
            if d.mask is not None:
                extra += f"  mask {int(d.mask.sum())} px"
            print(f"  {d.score:7.4f}  {d.label} ({d.index})  box [{box}]{extra}", file=out)
        return
    print(f"{image}:", file=out)
    for p in entry:
        print(f"  {p.score:7.4f}  {p.label} ({p.index})", file=out)


def entry_json(entry: Any) -> Any:
    """``--json``: a list of dicts (classes, detections), or ``{"size", "classes"}``."""
    if entry is None:
        return []
    if isinstance(entry, list):
        return [item.to_dict() for item in entry]
    return entry.to_dict()


def json_document(predictor: Any, model: str, images: list[str], results: Any) -> dict[str, Any]:
    """The ``--json`` document of a run."""
    return {
        "model": getattr(predictor.card, "name", model),
        "task": predictor.task,
        "device": str(predictor.device),
        "backend": predictor.backend,
        "backend_reason": predictor.backend_choice.reason,
        "results": [
            {
                "image": image,
                "predictions": entry_json(entry),
                "error": str(results.errors[i]) if i in results.errors else None,
            }
            for i, (image, entry) in enumerate(zip(images, results, strict=True))
        ],
    }


def dump_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def save_mask(entry: Any, image: str, folder: Path) -> Path:
    """A segmentation's class map as an 8-bit PNG (pixel value = class index)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (Path(image).stem + ".png")
    Image.fromarray(entry.class_map.astype("uint8")).save(target)
    return target
