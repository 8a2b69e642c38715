"""DataConfig: exactly what a set of weights expects as input.

A DataConfig is plain data (no torch import). ``create_transform`` in
:mod:`omnizoo.data.transforms` turns it into a pipeline; the registry fills it from what each
source declares (torchvision ``weights.transforms()``, timm ``pretrained_cfg``, Cadene
``pretrained_settings``, EfficientNet's recipe, the ONNX zoo's documented preprocessing).

Eval pipeline it describes, in order:

1. decode to RGB (EXIF orientation applied);
2. resize: with ``crop_mode="center"`` the shorter side goes to ``resize_size`` (or, when that
   is None, to ``floor(crop / crop_pct)`` as timm does); ``"squash"`` resizes both sides to
   ``floor(crop / crop_pct)`` ignoring aspect; ``"border"`` fits the longer side and pads;
   ``"none"`` resizes straight to ``input_size`` with no crop (Caffe-style);
3. crop the centre ``input_size[1:]``;
4. scale to ``value_range`` (0-1, or 0-255 for Caffe-era weights);
5. reorder channels to ``color_order`` (BGR for Caffe-era weights);
6. ``(x - mean) / std`` with mean/std given *in the value range and colour order of step 4-5*;
7. lay out as ``layout`` (NHWC only for a few ONNX exports).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigurationError
from ..schema import MAX_IMAGE_SIDE

if TYPE_CHECKING:
    from ..schema import Fields

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "MAX_CHANNELS",
    "DataConfig",
    "data_config_from_timm",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INCEPTION_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
INCEPTION_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
CropMode = Literal["center", "squash", "border", "none"]
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
_CROP_MODES = ("center", "squash", "border", "none")
#: The most input channels a file may declare (hyperspectral stems have a few hundred).
MAX_CHANNELS = 1024


@dataclass(frozen=True)
class DataConfig:
    """What the weights were trained with; see the module docstring for the pipeline order.

    >>> cfg = DataConfig(input_size=(3, 224, 224), resize_size=256)
    >>> cfg.scale_size
    256

    Raises:
        ConfigurationError: a field out of range or of the wrong kind (checked when the
            config is made; ``from_dict`` raises MetadataError for fields read from a file).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    crop_mode: str = "center"
    # Explicit shorter-side resize (torchvision's resize_size); wins over crop_pct when set.
    resize_size: int | None = None
    color_order: str = "RGB"  # or "BGR"
    value_range: tuple[float, float] = (0.0, 1.0)  # or (0.0, 255.0)
    layout: str = "NCHW"  # or "NHWC"
    # Larger size the weights were evaluated at (timm's test_input_size), for information.
    test_input_size: tuple[int, int, int] | None = None
    # True when mean/std etc. come from documentation or convention, not from the source's
    # own declared config (ONNX zoo families marked unverified).
    verified: bool = True
    # Torchvision's transforms use antialias=True on tensors; PIL always antialiases.
    antialias: bool = True

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) <= 0 for v in self.input_size):
            raise ConfigurationError(
                f"input_size must be (channels, height, width) of positive ints, "
                f"got {self.input_size!r}"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigurationError(
                f"interpolation={self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}"
            )
        if self.crop_mode not in _CROP_MODES:
            raise ConfigurationError(
                f"crop_mode={self.crop_mode!r} is not one of {', '.join(_CROP_MODES)}"
            )
        if not 0 < self.crop_pct <= 1.0 + 1e-9 and self.crop_mode != "none":
            raise ConfigurationError(f"crop_pct={self.crop_pct!r} must be in (0, 1]")
        channels = self.input_size[0]
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ConfigurationError(
                    f"{label} has {len(values)} values for {channels} input channels: "
                    f"{values!r}; give one value or one per channel"
                )
        if any(s == 0 for s in self.std):
            raise ConfigurationError(f"std must not contain 0, got {self.std!r}")
        if self.color_order not in ("RGB", "BGR"):
            raise ConfigurationError(f"color_order={self.color_order!r}; use 'RGB' or 'BGR'")
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigurationError(f"layout={self.layout!r}; use 'NCHW' or 'NHWC'")
        if tuple(self.value_range) not in ((0.0, 1.0), (0.0, 255.0)):
            raise ConfigurationError(f"value_range={self.value_range!r}; use (0, 1) or (0, 255)")

    @property
    def crop_size(self) -> tuple[int, int]:
        """(height, width) of the tensor the model sees."""
        return (int(self.input_size[1]), int(self.input_size[2]))

    @property
    def scale_size(self) -> int | tuple[int, int]:
        """The resize target before cropping (shorter side, or (h, w) for squash)."""
        h, w = self.crop_size
        if self.resize_size is not None:
            return int(self.resize_size)
        if self.crop_mode == "squash":
            return (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))
        if h == w:
            return math.floor(h / self.crop_pct)
        return (math.floor(h / self.crop_pct), math.floor(w / self.crop_pct))

    def replace(self, **overrides: Any) -> DataConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigurationError(
                f"unknown DataConfig field(s) {sorted(unknown)}; "
                f"valid: {', '.join(f.name for f in dataclasses.fields(self))}"
            )
        clean = {k: _normalise(k, v) for k, v in overrides.items()}
        return dataclasses.replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _normalise(k, v) for k, v in data.items() if k in names})

    @classmethod
    def from_fields(cls, f: Fields) -> DataConfig:
        """A DataConfig from untrusted fields (a card.json, an .onnx's metadata), every
        field checked for type and bounds first; a violation is one
        :class:`~omnizoo.errors.MetadataError` naming the file and the field.

        Reads what :meth:`to_dict` writes (and the shorthands :meth:`from_dict` accepts: an int
        ``input_size``, a one-element ``resize_size`` list); unknown keys are ignored and a
        missing key takes the default. No side may exceed
        :data:`~omnizoo.schema.MAX_IMAGE_SIDE`, resize target included, so nothing a file says
        can make a transform allocate more than one image of that size.

        >>> from omnizoo.schema import Fields
        >>> DataConfig.from_fields(Fields({"input_size": [3, 60000, 60000]}, "card.json", "data"))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        omnizoo.errors.MetadataError: card.json: field 'data.input_size[1]': 60000 is out of ...
        """
        default = cls()
        size = _size(f, "input_size", default.input_size)
        channels = size[0]
        crop_mode = f.choice("crop_mode", _CROP_MODES, default.crop_mode)
        crop_pct = f.optional_number("crop_pct", lo=0.0, hi=1.0 if crop_mode != "none" else None)
        if crop_pct == 0.0:
            raise f.error("crop_pct", "must be greater than 0")
        stats = {}
        for key in ("mean", "std"):
            values = f.optional_number_list(key, lo=-1e6, hi=1e6)
            if values is not None and len(values) not in (1, channels):
                raise f.error(key, f"{len(values)} values for {channels} input channels")
            stats[key] = tuple(values) if values is not None else getattr(default, key)
        if 0.0 in stats["std"]:
            raise f.error("std", "must not contain 0")
        value_range = f.optional_number_list("value_range", length=2)
        if value_range is not None and tuple(value_range) not in ((0.0, 1.0), (0.0, 255.0)):
            raise f.error("value_range", f"{value_range} is not [0, 1] or [0, 255]")
        test = _size(f, "test_input_size", None)
        out = cls(
            input_size=size,
            interpolation=f.choice("interpolation", _INTERPOLATIONS, default.interpolation),
            mean=stats["mean"],
            std=stats["std"],
            crop_pct=default.crop_pct if crop_pct is None else crop_pct,
            crop_mode=crop_mode,
            resize_size=_resize(f),
            color_order=f.choice("color_order", ("RGB", "BGR"), default.color_order),
            value_range=default.value_range if value_range is None else _pair(value_range),
            layout=f.choice("layout", ("NCHW", "NHWC"), default.layout),
            test_input_size=test,
            verified=_flag(f, "verified", default.verified),
            antialias=_flag(f, "antialias", default.antialias),
        )
        scale = out.scale_size if crop_mode != "none" else 0
        if max(scale if isinstance(scale, tuple) else (scale,)) > MAX_IMAGE_SIDE:
            # e.g. a tiny crop_pct: the resize before the crop would be the huge allocation
            raise f.error(
                "crop_pct", f"resizes to {scale} before cropping, over {MAX_IMAGE_SIDE} pixels"
            )
        return out


def _size(f: Fields, key: str, default: Any) -> Any:
    """``(channels, height, width)``, or an int ``n`` meaning ``(3, n, n)``, bounded."""
    if key in f and not isinstance(f.data[key], list):
        side = f.integer(key, lo=1, hi=MAX_IMAGE_SIDE)
        return (3, side, side)
    values = f.optional_integer_list(key, lengths=(3,), lo=1, hi=MAX_IMAGE_SIDE)
    if values is None:
        return default
    if values[0] > MAX_CHANNELS:
        raise f.error(f"{key}[0]", f"{values[0]} channels is over {MAX_CHANNELS}")
    return (values[0], values[1], values[2])


def _resize(f: Fields) -> int | None:
    """``resize_size``: an int, or torchvision's ``[256]`` (a list: its smaller side)."""
    if "resize_size" in f and isinstance(f.data["resize_size"], list):
        values = f.optional_integer_list("resize_size", lengths=(1, 2), lo=1, hi=MAX_IMAGE_SIDE)
        return min(values) if values else None
    return f.optional_integer("resize_size", lo=1, hi=MAX_IMAGE_SIDE)


def _flag(f: Fields, key: str, default: bool) -> bool:
    value = f.optional_flag(key)
    return default if value is None else value


def _pair(values: list[float]) -> tuple[float, float]:
    return (values[0], values[1])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _normalise(key: str, value: Any) -> Any:
    if key in ("input_size", "test_input_size") and value is not None:
        if isinstance(value, int):
            return (3, value, value)
        return tuple(int(v) for v in value)
    if key in ("mean", "std", "value_range") and value is not None:
        if isinstance(value, (int, float)):
            return (float(value),)
        return tuple(float(v) for v in value)
    if key == "resize_size" and isinstance(value, (list, tuple)):
        # torchvision gives [256]; a one-element list is a shorter-side size.
        return int(value[0]) if len(value) == 1 else int(min(value))
    return value


def data_config_from_timm(cfg: Mapping[str, Any]) -> DataConfig:
    """A DataConfig from a timm ``pretrained_cfg`` dict (the keys timm's resolver reads)."""
    input_size = tuple(cfg.get("input_size") or (3, 224, 224))
    test = cfg.get("test_input_size")
    crop_pct = cfg.get("crop_pct") or 0.875
    interpolation = cfg.get("interpolation") or "bilinear"
    if interpolation == "random":
        interpolation = "bilinear"
    mean = tuple(cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(cfg.get("std") or (0.229, 0.224, 0.225))
    channels = int(input_size[0])
    if len(mean) != channels and len(mean) == 3 and channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    crop_mode = cfg.get("crop_mode") or "center"
    resize_size = None
    if float(crop_pct) > 1.0 and crop_mode == "center" and input_size[1] == input_size[2]:
        # A few timm configs (volo_d*_448/512) resize *smaller* than the crop, which then pads
        # with zeros. DataConfig keeps crop_pct in (0, 1], so say it as an explicit shorter-side
        # size: floor(crop / crop_pct), exactly what timm computes.
        resize_size = math.floor(int(input_size[1]) / float(crop_pct))
        crop_pct = 1.0
    return DataConfig(
        input_size=(int(input_size[0]), int(input_size[1]), int(input_size[2])),
        interpolation=interpolation,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        crop_pct=float(crop_pct),
        crop_mode=crop_mode,
        resize_size=resize_size,
        test_input_size=tuple(int(v) for v in test) if test else None,  # type: ignore[arg-type]
    )
