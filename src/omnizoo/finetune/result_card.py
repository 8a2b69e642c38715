"""The card a fine-tune is saved with: the model omnizoo knows afterwards.

``best/`` is a :func:`omnizoo.save_pretrained` folder whose card has the data set's class
names, the DataConfig the run trained and evaluated with (``image_size`` included), and a
lineage that says what it was fine-tuned from (``summary``: "fine-tuned from
timm:resnet18.a1_in1k, with a new 10-class head") plus a ``finetune`` record: the recipe's
summary, the measured validation top-1/top-5, the epoch and the data. No metric published for
the parent weights is kept (:func:`omnizoo.values.relabel.strip_claims`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .recipe import Recipe

__all__ = ["finetuned_card", "saver"]


def finetuned_card(
    model: Any,
    classes: Sequence[str],
    recipe: Recipe,
    config: Any,
    row: dict[str, Any],
    val_images: int,
    data: str,
    precision: str = "fp32",
) -> Any:
    """The card of ``model`` as the fine-tune it now is (see the module docstring);
    ``precision``: the one the run used (``auto`` made concrete)."""
    from ..registry.derive import current_card
    from .heads import unwrap_model

    inner = unwrap_model(model)
    card = current_card(inner, inner.omnizoo_card)
    record = {
        "recipe": recipe.summary(),
        "precision": precision,
        "val_top1": round(float(row["val_top1"]), 4),
        "val_top5": round(float(row["val_top5"]), 4),
        "val_images": int(val_images),
        "epoch": int(row["epoch"]),
        "data": data,
        "classes": len(classes),
    }
    lineage = {**dict(card.lineage), "finetune": record}
    note = (
        f"fine-tuned by omnizoo finetune: validation top-1 {record['val_top1']:.2f}% on "
        f"{val_images} held-out images (epoch {record['epoch']})"
    )
    return dataclasses.replace(card, data=config, lineage=lineage, notes=(*card.notes, note))


def saver(
    run: Any,
    model: Any,
    classes: Sequence[str],
    recipe: Recipe,
    config: Any,
    val_images: int,
    data: str,
    precision: str = "fp32",
) -> Callable[[Any, dict[str, Any]], None]:
    """``save(model_to_save, metrics_row)``: writes ``run/best`` atomically (``run`` None:
    nothing is written)."""
    from .heads import unwrap_model
    from .pretrained import save_pretrained

    def save(which: Any, row: dict[str, Any]) -> None:
        if run is None:
            return
        inner = unwrap_model(which)
        card = finetuned_card(inner, classes, recipe, config, row, val_images, data, precision)
        previous = inner.__dict__.get("omnizoo_card")

        def write(folder: Path) -> None:
            inner.__dict__["omnizoo_card"] = card
            try:
                save_pretrained(inner, folder, labels=list(classes))
            finally:
                inner.__dict__["omnizoo_card"] = previous

        run.save_best(write)

    return save
