"""What a validation run measured (:class:`ValidationResult`), computed from the rows of its
log (:mod:`.validate_log`), and the files it writes: ``results.json``, ``per_class.csv``,
``confusion.csv`` and ``confusion.png`` (when matplotlib is installed).

The confusion matrix has one row per data set class and one column per data set class (the
model's output each one was matched to) plus ``other`` (any output that is none of them); its
cells count the images evaluated, so it sums to ``n``. Images that could not be decoded are
listed in ``errors`` and counted nowhere else.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .validate_log import Row

__all__ = ["ValidationResult", "compute_result", "wilson_interval", "write_outputs"]

_Z95 = 1.959963984540054
#: The images with the lowest probability of their true class kept in the result.
WORST = 20


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of ``k`` successes in ``n``, as fractions.

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class ValidationResult:
    """Accuracy of one model on one labelled set (JSON-serialisable: :meth:`to_dict`).

    Percentages are 0-100, as on the cards. ``card_top1``: the top-1 the card publishes for
    these weights (None for a fine-tune, a local checkpoint, relabelled weights or a card
    without one), on ``card_dataset``.
    """

    model: str
    backend: str
    precision: str
    data: str
    n: int
    top1_correct: int
    top5_correct: int
    top1: float
    top5: float
    top1_ci: tuple[float, float]
    classes: tuple[str, ...]
    per_class: tuple[dict[str, Any], ...]
    confusion: tuple[tuple[int, ...], ...]
    worst: tuple[dict[str, Any], ...]
    errors: tuple[dict[str, str], ...]
    card_top1: float | None = None
    card_dataset: str | None = None
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confusion_columns(self) -> tuple[str, ...]:
        """The confusion matrix's columns: the data set's classes, then ``other``."""
        return (*self.classes, "other")

    def card_line(self) -> str:
        """``card 80.4, measured 80.3 on 50,000 images`` (or ``no published figure``)."""
        measured = f"measured {self.top1:.1f} on {self.n:,} images"
        if self.card_top1 is None:
            return f"no published figure; {measured}"
        on = f" ({self.card_dataset})" if self.card_dataset else ""
        return f"card {self.card_top1:.1f}{on}, {measured}"

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON types."""
        out = asdict(self)
        out["top1_ci"] = list(self.top1_ci)
        out["confusion_columns"] = list(self.confusion_columns)
        out["card"] = self.card_line()
        return out


def compute_result(
    rows: Sequence[Row],
    *,
    classes: Sequence[str],
    class_index: Sequence[int],
    labels: Sequence[str],
    model: str,
    backend: str,
    precision: str,
    data: str,
    card_top1: float | None,
    card_dataset: str | None,
) -> ValidationResult:
    """The result of ``rows`` (the last row of a path wins: a resumed run's)."""
    by_path = {row.path: row for row in rows}
    position = {c: i for i, c in enumerate(classes)}
    column_of: dict[int, int] = {}
    for i, out_index in enumerate(class_index):
        column_of.setdefault(int(out_index), i)
    k = len(classes)
    confusion = [[0] * (k + 1) for _ in range(k)]
    top1 = [0] * k
    top5 = [0] * k
    count = [0] * k
    scored: list[tuple[float, Row]] = []
    errors: list[dict[str, str]] = []
    for row in by_path.values():
        if row.error is not None:
            errors.append({"path": row.path, "error": row.error})
            continue
        ci = position.get(row.label)
        if ci is None:  # a row of another class subset (--classes changed): not this run's
            continue
        want = int(class_index[ci])
        count[ci] += 1
        top1[ci] += row.top5[0] == want
        top5[ci] += want in row.top5
        confusion[ci][column_of.get(row.top5[0], k)] += 1
        scored.append((row.p_true, row))
    n = sum(count)
    c1, c5 = sum(top1), sum(top5)
    per_class = tuple(
        {
            "class": classes[i],
            "model_label": labels[int(class_index[i])],
            "n": count[i],
            "top1_correct": top1[i],
            "top5_correct": top5[i],
            "top1": round(100.0 * top1[i] / count[i], 4) if count[i] else None,
            "top5": round(100.0 * top5[i] / count[i], 4) if count[i] else None,
        }
        for i in range(k)
    )
    scored.sort(key=lambda item: (item[0], item[1].path))
    worst = tuple(
        {
            "path": row.path,
            "label": row.label,
            "p_true": p,
            "predicted": labels[row.top5[0]] if row.top5[0] < len(labels) else str(row.top5[0]),
        }
        for p, row in scored[:WORST]
    )
    lo, hi = wilson_interval(c1, n)
    return ValidationResult(
        model=model,
        backend=backend,
        precision=precision,
        data=data,
        n=n,
        top1_correct=c1,
        top5_correct=c5,
        top1=100.0 * c1 / n if n else 0.0,
        top5=100.0 * c5 / n if n else 0.0,
        top1_ci=(100.0 * lo, 100.0 * hi),
        classes=tuple(classes),
        per_class=per_class,
        confusion=tuple(tuple(r) for r in confusion),
        worst=worst,
        errors=tuple(sorted(errors, key=lambda e: e["path"])),
        card_top1=card_top1,
        card_dataset=card_dataset,
    )


def write_outputs(result: ValidationResult, out: Path) -> list[Path]:
    """results.json, per_class.csv, confusion.csv (and confusion.png) in ``out``, each
    replaced whole (these are omnizoo's own outputs, rewritten from the log every run)."""
    from ..weights import fsafe

    written = []
    files = {
        "results.json": json.dumps(result.to_dict(), indent=2) + "\n",
        "per_class.csv": _csv(
            ["class", "model_label", "n", "top1_correct", "top5_correct", "top1", "top5"],
            [[r[k] if r[k] is not None else "" for k in r] for r in result.per_class],
        ),
        "confusion.csv": _csv(
            ["class", *result.confusion_columns],
            [[c, *row] for c, row in zip(result.classes, result.confusion, strict=True)],
        ),
    }
    for name, text in files.items():
        path = out / name
        if path.is_symlink():
            from ..errors import ConfigurationError

            raise ConfigurationError(f"{path} is a symlink; omnizoo never writes through one")
        fsafe.write_atomic(path, text.encode())
        written.append(path)
    png = _plot(result, out / "confusion.png")
    if png is not None:
        written.append(png)
    return written


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _plot(result: ValidationResult, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if path.is_symlink():
        return None
    k = len(result.classes)
    size = min(20.0, 2.0 + 0.35 * (k + 1))
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    try:
        ax.imshow(result.confusion, cmap="Blues", aspect="auto")
        ax.set_xticks(range(k + 1), result.confusion_columns, rotation=90, fontsize=7)
        ax.set_yticks(range(k), result.classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true class")
        ax.set_title(f"{result.model}: top-1 {result.top1:.1f}% on {result.n:,} images")
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path
