"""What a :class:`~omnizoo.inference.predictor.Predictor` returns, per task.

* classification: per image a ``list[Prediction]`` (top-k, best first);
* detection and keypoints: per image a ``list[Detection]`` (best first), boxes in the pixel
  coordinates of the original (EXIF-upright) image;
* semantic segmentation: per image a :class:`Segmentation` (a class map at the original
  resolution and the share of the image each class covers).

Every result is plain frozen data with ``to_dict()`` for JSON:

>>> Prediction("tabby", 281, 0.61).to_dict()
{'label': 'tabby', 'index': 281, 'score': 0.61}
>>> Detection("car", 3, 0.9, (10.0, 20.0, 110.0, 80.0)).to_dict()["box"]
[10.0, 20.0, 110.0, 80.0]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageLoadError
from ..values.display import clip, html_grid, one_line, pretty_lines

__all__ = [
    "ClassShare",
    "Detection",
    "Keypoint",
    "Prediction",
    "PredictionResults",
    "Segmentation",
    "entry_columns",
    "task_columns",
]


@dataclass(frozen=True)
class Prediction:
    """One of the top-k answers for one image: class name, output index and score.

    ``score`` is a softmax probability (or the model's own probability output).

    >>> from omnizoo import Prediction
    >>> Prediction(label="tabby", index=281, score=0.61).label
    'tabby'

    Raises:
        Nothing: a record of an answer.
    """

    label: str
    index: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"label", "index", "score"}``."""
        return {"label": self.label, "index": self.index, "score": self.score}

    def __repr__(self) -> str:  # a label read from a file may be long: clipped
        return one_line(
            "Prediction",
            None,
            [("label", self.label), ("index", self.index), ("score", self.score)],
        )


@dataclass(frozen=True)
class Keypoint:
    """One keypoint of a detected person: its name, position (original pixels) and score."""

    name: str
    x: float
    y: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "x", "y", "score"}``."""
        return {"name": self.name, "x": self.x, "y": self.y, "score": self.score}


@dataclass(frozen=True)
class Detection:
    """One detected object: label, output index, score and box ``(x1, y1, x2, y2)`` in the
    original image's pixel coordinates; ``keypoints`` for keypoint models; ``mask`` (a boolean
    ``(H, W)`` numpy array at the original resolution) for instance-segmentation models."""

    label: str
    index: int
    score: float
    box: tuple[float, float, float, float]
    keypoints: tuple[Keypoint, ...] = ()
    mask: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; a mask is summarised by its pixel count (``mask_pixels``)."""
        out: dict[str, Any] = {
            "label": self.label,
            "index": self.index,
            "score": self.score,
            "box": [float(v) for v in self.box],
        }
        if self.keypoints:
            out["keypoints"] = [k.to_dict() for k in self.keypoints]
        if self.mask is not None:
            out["mask_pixels"] = int(self.mask.sum())
        return out

    def __repr__(self) -> str:  # 17 keypoints' reprs made one detection a paragraph
        box = "(" + ", ".join(f"{v:.1f}" for v in self.box) + ")"
        return one_line(
            "Detection",
            None,
            [
                ("label", self.label),
                ("index", self.index),
                ("score", self.score),
                ("box", _Raw(box)),
                ("keypoints", len(self.keypoints) or None),
            ],
        )


@dataclass(frozen=True)
class ClassShare:
    """The share (0-1) of an image's pixels a segmentation model assigns to one class."""

    label: str
    index: int
    share: float

    def to_dict(self) -> dict[str, Any]:
        """``{"label", "index", "share"}``."""
        return {"label": self.label, "index": self.index, "share": self.share}


@dataclass(frozen=True)
class Segmentation:
    """A semantic segmentation of one image.

    ``class_map``: ``(H, W)`` numpy integer array at the original resolution, each pixel the
    output index of its class; ``classes``: the classes present, largest share first.
    """

    class_map: Any = field(compare=False, repr=False)
    classes: tuple[ClassShare, ...]

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the class map (the original image's)."""
        return (int(self.class_map.shape[0]), int(self.class_map.shape[1]))

    def to_dict(self) -> dict[str, Any]:
        """``{"size": [h, w], "classes": [...]}`` (the class map itself is not JSON)."""
        return {"size": list(self.size), "classes": [c.to_dict() for c in self.classes]}


class PredictionResults(list):  # type: ignore[type-arg,unused-ignore]
    """One entry per input image (``list[Prediction]``, ``list[Detection]`` or
    ``Segmentation``), plus what went wrong.

    ``errors``: input index -> ImageLoadError for images that could not be read (their entry is
    ``[]``, or ``None`` for segmentation). ``indices``: the input index of each entry (differs
    from ``range(len)`` with ``on_error="skip"``).
    """

    def __init__(
        self,
        items: Iterable[Any] = (),
        *,
        errors: dict[int, ImageLoadError] | None = None,
        indices: list[int] | None = None,
    ) -> None:
        super().__init__(items)
        self.errors: dict[int, ImageLoadError] = dict(errors or {})
        self.indices: list[int] = list(indices) if indices is not None else list(range(len(self)))

    # -- how results show themselves: a count and the first answer, not every box and mask ----
    def __repr__(self) -> str:
        first = _answer_text(self[0]) if len(self) and self[0] else None
        return one_line(
            "PredictionResults",
            None,
            [("images", len(self)), ("errors", len(self.errors) or None), ("first", first)],
        )

    def _rows(self) -> list[tuple[int, str, str]]:
        """(input index, answer, error) per entry."""
        out = []
        for position, entry in enumerate(self):
            index = self.indices[position] if position < len(self.indices) else position
            error = self.errors.get(index)
            out.append((index, _answer_text(entry), "" if error is None else str(error)))
        return out

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        lines = [
            f"[{i}] " + (f"error: {err}" if err else answer) for i, answer, err in self._rows()
        ]
        pretty_lines(p, cycle, f"PredictionResults ({len(self)} images)", lines)

    def _repr_html_(self) -> str:
        title = f"{len(self)} images" + (f", {len(self.errors)} unreadable" if self.errors else "")
        return html_grid(["image", "answer", "error"], self._rows(), title=title)


class _Raw(str):
    """A string a repr shows as it is (not quoted)."""

    def __repr__(self) -> str:
        return str(self)


def _answer_text(entry: Any, shown: int = 3) -> str:
    """One image's answer in a few words: its best classes or detections with their scores, or
    the largest segmentation classes with their shares."""
    if isinstance(entry, Segmentation):
        items = [f"{clip(c.label, 30)} {c.share:.0%}" for c in entry.classes[:shown]]
        more = len(entry.classes) - shown
    else:
        entries = list(entry or [])
        items = [f"{clip(e.label, 30)} {e.score:.3f}" for e in entries[:shown]]
        more = len(entries) - shown
    return ", ".join(items) + (f", ... (+{more})" if more > 0 else "") if items else "-"


def task_columns(task: str) -> tuple[str, ...]:
    """The result columns the output files hold for ``task`` (besides ``path`` and ``error``).

    >>> task_columns("detection")
    ('labels', 'indices', 'scores', 'boxes')
    """
    base = ("labels", "indices", "scores")
    if task == "detection":
        return (*base, "boxes")
    if task == "keypoints":
        return (*base, "boxes", "keypoints")
    return base


def entry_columns(entry: Any, task: str = "classification") -> dict[str, Any]:
    """The flat columns of one image's entry (:func:`task_columns`), as output files store them.

    ``labels``, ``indices``, ``scores``: the top-k classes, the detections best first, or the
    segmentation classes by share (``scores`` then holds the shares); ``boxes``: ``[x1, y1,
    x2, y2]`` per detection; ``keypoints``: ``[[x, y, score], ...]`` per detection. A failed
    image (``entry`` None or ``[]``) gives empty lists.

    >>> entry_columns([Prediction("tabby", 281, 0.61)])
    {'labels': ['tabby'], 'indices': [281], 'scores': [0.61]}
    """
    items: list[Any] = list(entry.classes) if isinstance(entry, Segmentation) else list(entry or [])
    out: dict[str, Any] = {
        "labels": [str(p.label) for p in items],
        "indices": [int(p.index) for p in items],
        "scores": [float(p.share if isinstance(p, ClassShare) else p.score) for p in items],
    }
    columns = task_columns(task)
    if "boxes" in columns:
        out["boxes"] = [[float(v) for v in d.box] for d in items]
    if "keypoints" in columns:
        out["keypoints"] = [[[k.x, k.y, k.score] for k in d.keypoints] for d in items]
    return out
