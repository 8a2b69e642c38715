"""``create_transform``: the exact preprocessing a set of weights expects, built from a DataConfig.

Inputs the transform accepts:

* a ``PIL.Image`` (any mode: converted to RGB, or to L for one-channel models);
* a ``torch.Tensor`` image in torchvision's convention, ``(C, H, W)`` (or a batch
  ``(..., C, H, W)`` in eval mode), either ``uint8`` in 0-255 or floating point in 0-1;
* a ``numpy.ndarray`` ``(H, W, C)`` or ``(H, W)`` ``uint8`` array (the layout PIL, OpenCV
  and scikit-image use) — converted to a PIL image first, so it gives the PIL result.

The eval pipeline follows :mod:`omnizoo.values.data_config`. Each step calls the same torchvision
functional op the reference pipelines call for that input type, so PIL input gives the
result of the source's PIL pipeline (torchvision ``weights.transforms()``, timm's eval
transform, pretrainedmodels ``TransformImage``, EfficientNet's Resize+CenterCrop recipe)
bit for bit, and tensor input gives the result of torchvision's tensor pipeline
(antialiased tensor resize). PIL and tensor resizing differ by a few 1/255 steps; that is
upstream behaviour, not ours. Tensor input with an interpolation only PIL has (lanczos,
box, hamming) goes through PIL.

The train transform is timm's (``timm.data.create_transform(is_training=True)``:
RandomResizedCrop, horizontal flip, optional colour jitter / auto-augment / random erasing,
passed through ``**train_kwargs``), with the config's size, interpolation, mean and std, and
the colour order and value range of Caffe-era configs applied after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..values.data_config import DataConfig

if TYPE_CHECKING:
    import torch

__all__ = ["ImageTransform", "create_transform"]

_PIL_ONLY = ("lanczos", "box", "hamming")


def create_transform(
    name_or_model_or_config: Any, *, train: bool = False, **train_kwargs: Any
) -> ImageTransform:
    """The preprocessing for a model name, card, omnizoo model or :class:`DataConfig`.

    >>> from omnizoo.values.data_config import DataConfig
    >>> t = create_transform(DataConfig(input_size=(3, 224, 224), resize_size=256))
    >>> t.config.crop_size
    (224, 224)

    ``train=True`` gives timm's training augmentation; extra keyword arguments (``hflip``,
    ``color_jitter``, ``auto_augment``, ``re_prob``, ``scale``, ``ratio`` ...) go to
    ``timm.data.create_transform``. They are refused for eval transforms.

    Raises:
        ConfigurationError: augmentation arguments without ``train=True``, or an argument
            :func:`~omnizoo.data.resolve.resolve_data_config` cannot resolve (a model name
            raises what :func:`omnizoo.get_card` raises). Calling the transform on something
            that is not an image is a ConfigurationError too.
        DependencyError: ``train=True`` without timm installed.
    """
    from .resolve import resolve_data_config

    config = resolve_data_config(name_or_model_or_config)
    if train_kwargs and not train:
        raise ConfigurationError(
            f"augmentation arguments {sorted(train_kwargs)} only apply with train=True"
        )
    return ImageTransform(config, train=train, train_kwargs=train_kwargs)


class ImageTransform:
    """A picklable callable: image -> float tensor, as described by ``config``."""

    def __init__(
        self,
        config: DataConfig,
        *,
        train: bool = False,
        train_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.train = train
        self.train_kwargs = dict(train_kwargs or {})
        self._train_tf: Any = None

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return f"ImageTransform({mode}, {self.config!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_train_tf"] = None  # rebuilt lazily in the worker
        return state

    def __call__(self, img: Any) -> torch.Tensor:
        if self.train:
            return self._apply_train(img)
        return self._apply_eval(img)

    # -- eval ---------------------------------------------------------------------------------

    def _apply_eval(self, img: Any) -> torch.Tensor:
        import torch
        from torchvision.transforms import functional as F

        cfg = self.config
        img = _prepare(img, cfg.input_size[0])
        if isinstance(img, torch.Tensor) and cfg.interpolation in _PIL_ONLY:
            img = _tensor_to_pil(img)
        interp = _interp(cfg.interpolation)
        antialias = cfg.antialias
        h, w = cfg.crop_size
        if cfg.crop_mode == "none":
            img = F.resize(img, [h, w], interp, antialias=antialias)
        elif cfg.crop_mode == "squash":
            size = cfg.scale_size
            sh, sw = (size, size) if isinstance(size, int) else size
            img = F.resize(img, [sh, sw], interp, antialias=antialias)
            img = F.center_crop(img, [h, w])
        elif cfg.crop_mode == "border":
            size = cfg.scale_size
            target = (size, size) if isinstance(size, int) else size
            img = F.resize(
                img, _keep_ratio_size(img, target, longest=1.0), interp, antialias=antialias
            )
            fill = [round(255 * v) for v in cfg.mean]
            img = _center_crop_or_pad(img, (h, w), fill)
        else:  # center
            size = cfg.scale_size
            if isinstance(size, int):
                img = F.resize(img, [size], interp, antialias=antialias)
            else:
                img = F.resize(
                    img, _keep_ratio_size(img, size, longest=0.0), interp, antialias=antialias
                )
            img = F.center_crop(img, [h, w])
        x = _to_float(img)
        return _finish(x, cfg)

    # -- train --------------------------------------------------------------------------------

    def _apply_train(self, img: Any) -> torch.Tensor:
        import torch

        cfg = self.config
        img = _prepare(img, cfg.input_size[0])
        if isinstance(img, torch.Tensor):
            if img.dim() != 3:
                raise ConfigurationError("train transforms take one (C, H, W) image at a time")
            img = _tensor_to_pil(img)
        if self._train_tf is None:
            self._train_tf = _build_timm_train(cfg, self.train_kwargs)
        x = self._train_tf(img)
        if cfg.color_order == "BGR":
            x = x.flip(-3)
        if cfg.layout == "NHWC":
            x = x.movedim(-3, -1)
        return x


# -- helpers -----------------------------------------------------------------------------------


def _interp(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(name)


def _prepare(img: Any, channels: int) -> Any:
    """PIL stays PIL (mode fixed), ndarrays become PIL, tensors are checked."""
    import numpy as np
    import torch
    from PIL import Image

    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ConfigurationError(
                f"numpy images must be uint8 (H, W[, C]); got {img.dtype}. "
                "Pass a float image as a (C, H, W) torch tensor in 0-1 instead."
            )
        img = Image.fromarray(img)
    if isinstance(img, Image.Image):
        want = "L" if channels == 1 else "RGB"
        if img.mode != want:
            from .images import to_rgb

            img = to_rgb(img)
            if want == "L":
                img = img.convert("L")
        return img
    if isinstance(img, torch.Tensor):
        if img.dim() < 2:
            raise ConfigurationError(
                f"an image tensor needs (C, H, W); got shape {tuple(img.shape)}"
            )
        if img.dim() == 2:
            img = img.unsqueeze(0)
        c = img.shape[-3]
        if c not in (1, 3, 4):
            raise ConfigurationError(
                f"image tensors are (C, H, W) with C in 1, 3, 4 (torchvision convention); got "
                f"shape {tuple(img.shape)}. An (H, W, C) array needs .permute(2, 0, 1)."
            )
        if c == 4:
            img = img[..., :3, :, :]
        if channels == 3 and img.shape[-3] == 1:
            img = img.expand(*img.shape[:-3], 3, *img.shape[-2:])
        elif channels == 1 and img.shape[-3] == 3:
            from torchvision.transforms import functional as F

            img = F.rgb_to_grayscale(img)
        if img.dtype != torch.uint8 and not img.is_floating_point():
            raise ConfigurationError(f"image tensors must be uint8 or float; got {img.dtype}")
        return img
    raise ConfigurationError(
        f"cannot transform a {type(img).__name__}; give a PIL image, a (C, H, W) tensor or an "
        "(H, W, C) uint8 array (load files with omnizoo.data.images.load_image)"
    )


def _tensor_to_pil(img: torch.Tensor) -> Any:
    import torch
    from torchvision.transforms import functional as F

    if img.is_floating_point():
        img = (img.clamp(0, 1) * 255).round().to(dtype=torch.uint8)
    return F.to_pil_image(img)


def _keep_ratio_size(img: Any, target: tuple[int, int], *, longest: float) -> list[int]:
    """timm's ResizeKeepRatio size rule (no randomness)."""
    from torchvision.transforms import functional as F

    img_h, img_w = F.get_dimensions(img)[1:]
    ratio_h = img_h / target[0]
    ratio_w = img_w / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return [round(img_h / ratio), round(img_w / ratio)]


def _center_crop_or_pad(img: Any, size: tuple[int, int], fill: list[int]) -> Any:
    """timm's center_crop_or_pad; tensor padding uses a per-channel fill too."""
    import torch
    from torchvision.transforms import functional as F

    crop_h, crop_w = size
    _, img_h, img_w = F.get_dimensions(img)
    if crop_w > img_w or crop_h > img_h:
        left = (crop_w - img_w) // 2 if crop_w > img_w else 0
        top = (crop_h - img_h) // 2 if crop_h > img_h else 0
        right = (crop_w - img_w + 1) // 2 if crop_w > img_w else 0
        bottom = (crop_h - img_h + 1) // 2 if crop_h > img_h else 0
        if isinstance(img, torch.Tensor):
            c = img.shape[-3]
            values: list[float] = [float(v) for v in (fill if len(fill) == c else [fill[0]] * c)]
            if img.is_floating_point():
                values = [v / 255 for v in values]
            shape = (*img.shape[:-2], img_h + top + bottom, img_w + left + right)
            canvas = torch.empty(shape, dtype=img.dtype)
            for i, v in enumerate(values):
                canvas[..., i, :, :] = v
            canvas[..., top : top + img_h, left : left + img_w] = img
            img = canvas
        else:
            pil_fill = tuple(fill) if len(fill) > 1 else fill[0]
            img = F.pad(img, [left, top, right, bottom], fill=pil_fill)
        _, img_h, img_w = F.get_dimensions(img)
        if crop_w == img_w and crop_h == img_h:
            return img
    top = round((img_h - crop_h) / 2.0)
    left = round((img_w - crop_w) / 2.0)
    return F.crop(img, top, left, crop_h, crop_w)


def _to_float(img: Any) -> torch.Tensor:
    """PIL or uint8 tensor -> float32 in 0-1, the way ToTensor / convert_image_dtype do it."""
    import torch
    from torchvision.transforms import functional as F

    if not isinstance(img, torch.Tensor):
        img = F.pil_to_tensor(img)
    if img.dtype == torch.uint8:
        return img.to(dtype=torch.float32).div(255)
    return img.to(dtype=torch.float32)


def _finish(x: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Value range, colour order, normalisation and layout (steps 4-7)."""
    from torchvision.transforms import functional as F

    if cfg.value_range[1] == 255.0:
        x = x.mul(255)
    if cfg.color_order == "BGR":
        x = x.flip(-3)
    c = x.shape[-3]
    mean = list(cfg.mean) * (c if len(cfg.mean) == 1 else 1)
    std = list(cfg.std) * (c if len(cfg.std) == 1 else 1)
    x = F.normalize(x, mean=mean, std=std)
    if cfg.layout == "NHWC":
        x = x.movedim(-3, -1)
    return x


def _build_timm_train(cfg: DataConfig, kwargs: dict[str, Any]) -> Any:
    try:
        from timm.data import create_transform as timm_create_transform
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(f"train transforms need timm: {pip_install('timm')}") from exc
    mean = list(cfg.mean)
    std = list(cfg.std)
    scale = cfg.value_range[1]
    if cfg.color_order == "BGR":
        # timm normalises RGB; the channel flip happens after, so flip the statistics too.
        mean, std = mean[::-1], std[::-1]
    if scale != 1.0:
        # (255 x - m) / s == (x - m/255) / (s/255): normalise in 0-1 with rescaled statistics.
        mean = [m / scale for m in mean]
        std = [s / scale for s in std]
    args: dict[str, Any] = {
        "input_size": tuple(cfg.input_size),
        "is_training": True,
        "interpolation": cfg.interpolation,
        "mean": tuple(mean),
        "std": tuple(std),
        "crop_pct": cfg.crop_pct,
    }
    args.update(kwargs)
    return timm_create_transform(**args)


def describe(config: DataConfig) -> str:
    """One human-readable line for the eval pipeline of ``config`` (used by docs and CLI)."""
    h, w = config.crop_size
    size = config.scale_size
    if config.crop_mode == "none":
        steps = [f"resize to {h}x{w}"]
    elif config.crop_mode == "squash":
        steps = [f"resize (squash) to {size}", f"centre crop {h}x{w}"]
    elif config.crop_mode == "border":
        steps = [f"fit longer side to {size}", f"pad/crop to {h}x{w}"]
    else:
        what = (
            f"shorter side to {size}" if isinstance(size, int) else f"keep-ratio resize to {size}"
        )
        steps = [what, f"centre crop {h}x{w}"]
    steps[0] += f" ({config.interpolation})"
    lo, hi = config.value_range
    steps.append(f"{config.color_order} in {lo:g}-{hi:g}")
    steps.append(f"normalise mean={_fmt(config.mean)} std={_fmt(config.std)}")
    if config.layout != "NCHW":
        steps.append(config.layout)
    return ", ".join(steps)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
