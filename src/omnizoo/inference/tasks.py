"""What a Predictor does per task: how an image is prepared, how a batch runs, what comes out.

The task comes from the model's card (``card.task``), from ``Predictor(task=...)``, or for a
plain torchvision module from the package its class lives in. Each task uses the
pre/post-processing of the weights' own library:

* **classification**: the card's exact transform, softmax (unless the model already outputs
  probabilities), top-k;
* **detection / keypoints** (torchvision detection models): torchvision's ``ObjectDetection``
  preset (the original image as a 0-1 float tensor); the model resizes and normalises inside
  and maps its boxes back to the size of the image it was given, so boxes come out in the
  original image's pixel coordinates; detections under the score threshold are dropped;
* **segmentation**: torchvision's ``SemanticSegmentation`` preset (shorter side resized to the
  card's ``resize_size``, no crop, mean/std); the logits are resized back to the original
  resolution (bilinear) before the arg-max, so the class map has the original image's size.

Video and optical-flow models take clips and image pairs, not single images: asking a
Predictor for one raises :class:`~omnizoo.errors.UnsupportedError` saying what to do instead.

>>> resolve_task("segmentation", None, None)
'segmentation'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..data.labels import generic_label
from ..errors import ConfigurationError, UnsupportedError
from .results import ClassShare, Detection, Keypoint, Prediction, Segmentation

if TYPE_CHECKING:
    import torch

    from ..values.data_config import DataConfig

__all__ = [
    "SUPPORTED_TASKS",
    "ClassificationTask",
    "DetectionTask",
    "SegmentationTask",
    "resolve_task",
    "to_float_image",
]

SUPPORTED_TASKS = (
    "classification",
    "quantized_classification",
    "detection",
    "keypoints",
    "segmentation",
)
# torchvision package of a model class -> task, for modules built outside omnizoo.
_TV_PACKAGES = (
    ("torchvision.models.detection.keypoint_rcnn", "keypoints"),
    ("torchvision.models.detection", "detection"),
    ("torchvision.models.segmentation", "segmentation"),
    ("torchvision.models.video", "video"),
    ("torchvision.models.optical_flow", "optical_flow"),
)
# Segmentation logits are resized to the original image only while they fit in this many
# float32 elements (256 MB); beyond it the class map is resized (nearest) instead.
_MAX_UPSAMPLED_LOGITS = 64 * 1024 * 1024


def resolve_task(task: str | None, card: Any, model: Any) -> str:
    """The task a Predictor runs: ``task`` if given, else the card's, else inferred from a
    torchvision model's package, else classification. Unsupported tasks raise
    :class:`UnsupportedError` with what to do instead."""
    name = getattr(card, "name", None) or type(model).__name__
    if task is None:
        task = getattr(card, "task", None)
    if task is None and model is not None:
        module = type(model).__module__
        task = next((t for prefix, t in _TV_PACKAGES if module.startswith(prefix)), None)
    task = task or "classification"
    if task in SUPPORTED_TASKS:
        return str(task)
    if task == "video":
        raise UnsupportedError(
            f"{name} is a video model: it classifies clips (T frames), not single images. Run "
            "it directly: model = create_model(name, pretrained=True).eval(); then "
            "model(clip) with clip a (N, C, T, H, W) float batch prepared by torchvision's "
            "weights.transforms() (VideoClassification), e.g. torchvision.io.read_video frames"
        )
    if task == "optical_flow":
        raise UnsupportedError(
            f"{name} is an optical-flow model: it takes image pairs and returns flow fields, "
            "not labels. Run it directly: flows = model(img1, img2) on batches prepared by "
            "torchvision's weights.transforms() (OpticalFlow); the last element is the "
            "finest flow, (N, 2, H, W)"
        )
    if task == "features":
        raise UnsupportedError(
            f"{name} returns features (no classifier head), not class scores: call the model "
            "directly, or give it a head first (reset_classifier(model, num_classes))"
        )
    raise ConfigurationError(f"task={task!r}; the Predictor runs {', '.join(SUPPORTED_TASKS)}")


def _load(img: Any) -> Any:
    from ..data.images import load_image

    if isinstance(img, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(img, "read"):
        return load_image(img)
    return img


def to_float_image(img: Any) -> torch.Tensor:
    """Any accepted image input as a ``(3, H, W)`` float 0-1 tensor, as torchvision's
    ``ObjectDetection`` preset makes it (``pil_to_tensor`` + ``convert_image_dtype``)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import functional as F

    from ..data.images import to_rgb

    img = _load(img)
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ConfigurationError(f"numpy images must be uint8 (H, W[, C]); got {img.dtype}")
        img = Image.fromarray(img)
    if isinstance(img, Image.Image):
        tensor = F.pil_to_tensor(to_rgb(img) if img.mode != "RGB" else img)
    elif isinstance(img, torch.Tensor):
        tensor = img.unsqueeze(0) if img.dim() == 2 else img
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
            raise ConfigurationError(f"an image tensor is (C, H, W); got {tuple(img.shape)}")
        tensor = tensor[:3] if tensor.shape[0] == 4 else tensor.expand(3, -1, -1)
    else:
        raise ConfigurationError(
            f"cannot read a {type(img).__name__} as an image; give a path, bytes, a PIL image, "
            "a (C, H, W) tensor or an (H, W, C) uint8 array"
        )
    return F.convert_image_dtype(tensor, torch.float)


class ClassificationTask:
    """Top-k classes per image from a ``(N, classes)`` score batch."""

    kind = "classification"

    def __init__(self, transform: Any, labels: list[str]) -> None:
        self.transform = transform
        self.labels = labels

    def prepare(self, img: Any) -> torch.Tensor:
        return self.transform(_load(img))

    @staticmethod
    def collate(items: list[Any]) -> torch.Tensor:
        import torch

        return torch.stack(items)

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else generic_label(index)

    def top(self, probabilities: torch.Tensor, topk: int) -> list[list[Prediction]]:
        import torch

        k = max(1, min(int(topk), probabilities.shape[1]))
        values, idx = torch.topk(probabilities, k=k, dim=1)
        return [
            [
                Prediction(self.label(int(j)), int(j), float(v))
                for v, j in zip(vals.tolist(), ids.tolist(), strict=True)
            ]
            for vals, ids in zip(values, idx, strict=True)
        ]


class DetectionTask:
    """Boxes (and keypoints, masks) per image from a torchvision detection model."""

    kind = "detection"

    def __init__(self, labels: list[str], keypoint_names: Sequence[str] = ()) -> None:
        self.labels = labels
        self.keypoint_names = [str(n) for n in keypoint_names]

    @staticmethod
    def prepare(img: Any) -> torch.Tensor:
        return to_float_image(img)

    @staticmethod
    def collate(items: list[Any]) -> list[Any]:
        return list(items)  # the model batches images of different sizes itself

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else generic_label(index)

    def detections(
        self, outputs: list[dict[str, Any]], threshold: float, topk: int | None
    ) -> list[list[Detection]]:
        """One list per image, best first: score >= ``threshold``, at most ``topk``."""
        return [self._one(out, threshold, topk) for out in outputs]

    def _one(self, out: dict[str, Any], threshold: float, topk: int | None) -> list[Detection]:
        scores = out["scores"].float().cpu()
        order = scores.argsort(descending=True)
        order = order[scores[order] >= threshold]
        if topk is not None:
            order = order[: max(0, int(topk))]
        boxes = out["boxes"].float().cpu()
        labels = out["labels"].cpu()
        kps = out.get("keypoints")
        kp_scores = out.get("keypoints_scores")
        masks = out.get("masks")
        found = []
        for i in order.tolist():
            keypoints: tuple[Keypoint, ...] = ()
            if kps is not None:
                pts = kps[i].float().cpu()
                ks = kp_scores[i].float().cpu() if kp_scores is not None else pts[:, 2]
                keypoints = tuple(
                    Keypoint(self._kp_name(j), float(p[0]), float(p[1]), float(s))
                    for j, (p, s) in enumerate(zip(pts, ks, strict=True))
                )
            mask = None
            if masks is not None:
                mask = (masks[i, 0] > 0.5).cpu().numpy()
            index = int(labels[i])
            x1, y1, x2, y2 = (float(v) for v in boxes[i].tolist())
            found.append(
                Detection(
                    self.label(index), index, float(scores[i]), (x1, y1, x2, y2), keypoints, mask
                )
            )
        return found

    def _kp_name(self, j: int) -> str:
        return self.keypoint_names[j] if j < len(self.keypoint_names) else str(j)


class SegmentationTask:
    """A class map at the original resolution, and per-class pixel shares."""

    kind = "segmentation"

    def __init__(self, data_config: DataConfig, labels: list[str]) -> None:
        self.config = data_config
        self.labels = labels
        self.resize = int(data_config.resize_size or min(data_config.crop_size))

    def prepare(self, img: Any) -> tuple[torch.Tensor, tuple[int, int]]:
        """torchvision's SemanticSegmentation preset; returns (tensor, original (h, w))."""
        import torch
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        from ..data.images import to_rgb

        img = _load(img)
        if isinstance(img, Image.Image):
            img = to_rgb(img) if img.mode != "RGB" else img
            size = (img.height, img.width)
        else:
            img = to_float_image(img)
            size = (int(img.shape[-2]), int(img.shape[-1]))
        mode = InterpolationMode(self.config.interpolation)
        img = F.resize(img, [self.resize], interpolation=mode, antialias=self.config.antialias)
        if not isinstance(img, torch.Tensor):
            img = F.pil_to_tensor(img)
        x = F.convert_image_dtype(img, torch.float)
        x = F.normalize(x, mean=list(self.config.mean), std=list(self.config.std))
        return x, size

    @staticmethod
    def collate(items: list[Any]) -> list[Any]:
        return list(items)

    @staticmethod
    def groups(items: list[tuple[torch.Tensor, tuple[int, int]]]) -> list[list[int]]:
        """Positions of items whose tensors have the same shape (each group is one batch)."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (x, _) in enumerate(items):
            by_shape.setdefault(tuple(x.shape), []).append(i)
        return list(by_shape.values())

    def segmentation(
        self, logits: torch.Tensor, size: tuple[int, int], topk: int | None
    ) -> Segmentation:
        """From one image's ``(C, h, w)`` logits and its original ``size``."""
        import torch
        import torch.nn.functional as F

        logits = logits.float()
        channels = int(logits.shape[0])
        if channels * size[0] * size[1] <= _MAX_UPSAMPLED_LOGITS:
            up = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)
            class_map = up[0].argmax(0)
        else:
            small = logits.argmax(0)[None, None].float()
            class_map = F.interpolate(small, size=size, mode="nearest")[0, 0].long()
        counts = torch.bincount(class_map.flatten().cpu(), minlength=channels)
        total = float(size[0] * size[1]) or 1.0
        present = [i for i in counts.argsort(descending=True).tolist() if counts[i] > 0]
        if topk is not None:
            present = present[: max(0, int(topk))]
        classes = tuple(
            ClassShare(
                self.labels[i] if i < len(self.labels) else generic_label(i),
                i,
                float(counts[i]) / total,
            )
            for i in present
        )
        dtype = "uint8" if channels <= 256 else "int32"
        return Segmentation(class_map.cpu().numpy().astype(dtype), classes)
