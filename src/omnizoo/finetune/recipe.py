"""The fine-tuning recipe: every knob of :func:`omnizoo.finetune.fit`, with its default.

>>> r = Recipe(epochs=5, lr=1e-3)
>>> r.summary().split(", ")[0]
'AdamW lr 0.001 (layer decay 0.75; head-only epochs at 0.01)'
>>> r.summary().split(", ")[2]
'5 epochs (1 head-only)'
>>> Recipe.from_dict(r.to_dict()) == r
True

The default is what works for most pretrained image classifiers on a small data set: the new
head is trained alone first (``head_epochs``, backbone frozen with its BatchNorm statistics, so
a random head cannot wreck the pretrained features), then the whole network with layer-wise
learning-rate decay (:func:`omnizoo.param_groups`: the stem moves least), AdamW, a cosine
schedule after a linear warm-up, and label smoothing 0.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["PRECISIONS", "Recipe"]

#: ``Recipe.precision``: ``auto`` is bf16 on a GPU that has it (else fp16), bf16 on a CPU with
#: native bf16 (AVX512-BF16/AMX), else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Recipe:
    """How :func:`~omnizoo.finetune.fit` trains (see the module docstring for the defaults).

    ``batch_size`` is per process (under torchrun/Ray each worker takes this many images per
    step); ``accum_steps`` micro-batches make one optimizer step. ``head_lr`` (default ten
    times ``lr``) is the learning rate of the head-only epochs; afterwards the head gets
    ``lr`` and each earlier layer ``lr * layer_decay ** depth``. ``warmup_epochs`` (may be a
    fraction) ramp the learning rate linearly from 0 at the start of the whole-network phase;
    the cosine then falls to ``lr * min_lr_ratio``. ``patience``: stop after this many epochs
    without a better validation top-1 (None: never). ``ema``: keep an exponential moving
    average of the weights (decay ``ema_decay``), validated and saved instead of the raw
    weights. ``image_size``: train and evaluate at this size instead of the card's (the saved
    card records it). ``min_crop``: the smallest area fraction RandomResizedCrop keeps (0.08 as
    timm's and torchvision's ImageNet presets; raise it for small objects or tiny images);
    ``hflip``: the probability of a horizontal flip (0 for text, digits, ...).
    ``channels_last``: None for automatic (CUDA only). ``freeze_bn``: keep every BatchNorm's
    running statistics as loaded, in both phases. None (default): frozen when the model starts
    from trained weights (published or a checkpoint), estimated from the data when it starts
    from random init. Why: statistics re-estimated on a small, unlike data set shift every
    pretrained feature at once (EfficientNet-Lite0 on digits: 97.8% with them frozen, 82.1%
    estimated; frozen in the head epoch and released after it, 87.7% fell to 50.8%).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    head_lr: float | None = None
    weight_decay: float = 0.05
    layer_decay: float | None = 0.75
    head_epochs: int = 1
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    accum_steps: int = 1
    clip_grad: float | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    freeze_bn: bool | None = None
    ema: bool = False
    ema_decay: float = 0.999
    patience: int | None = None
    seed: int = 0
    image_size: int | None = None
    min_crop: float = 0.08
    hflip: float = 0.5
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        def bad(name: str, rule: str) -> ConfigurationError:
            return ConfigurationError(
                f"recipe {name}={getattr(self, name)!r}: must be {rule} (omnizoo finetune "
                f"--{name.replace('_', '-')})"
            )

        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("lr", "ema_decay"):
            if not getattr(self, name) > 0:
                raise bad(name, "> 0")
        if self.head_lr is not None and not self.head_lr > 0:
            raise bad("head_lr", "> 0")
        if self.weight_decay < 0 or self.label_smoothing < 0 or self.label_smoothing >= 1:
            raise bad("weight_decay" if self.weight_decay < 0 else "label_smoothing", "in range")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise bad("layer_decay", "in (0, 1]")
        if not 0 <= self.head_epochs < self.epochs:
            raise bad("head_epochs", f"from 0 to epochs - 1 ({self.epochs - 1})")
        if self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise bad("warmup_epochs" if self.warmup_epochs < 0 else "min_lr_ratio", "in range")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {', '.join(PRECISIONS)}")
        if self.patience is not None and self.patience < 1:
            raise bad("patience", ">= 1")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise bad("clip_grad", "> 0")
        if self.image_size is not None and not 8 <= self.image_size <= 8192:
            raise bad("image_size", "from 8 to 8192")
        if not 0 < self.min_crop <= 1:
            raise bad("min_crop", "in (0, 1]")
        if not 0 <= self.hflip <= 1:
            raise bad("hflip", "in [0, 1]")
        if not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "in (0, 1)")

    @property
    def head_lr_value(self) -> float:
        """The head-only epochs' learning rate (``head_lr``, default ``10 * lr``)."""
        return self.head_lr if self.head_lr is not None else 10 * self.lr

    def summary(self) -> str:
        """One line for the card and the log."""
        decay = f"layer decay {self.layer_decay:g}" if self.layer_decay else "no layer decay"
        head = f"; head-only epochs at {self.head_lr_value:g}" if self.head_epochs else ""
        parts = [
            f"AdamW lr {self.lr:g} ({decay}{head}), weight decay {self.weight_decay:g}",
            f"{self.epochs} epochs"
            + (f" ({self.head_epochs} head-only)" if self.head_epochs else ""),
            f"cosine with {self.warmup_epochs:g} warm-up epoch"
            + ("" if self.warmup_epochs == 1 else "s"),
            f"label smoothing {self.label_smoothing:g}",
            f"batch {self.batch_size}" + (f"x{self.accum_steps}" if self.accum_steps > 1 else ""),
            f"precision {self.precision}",
        ]
        if self.ema:
            parts.append(f"EMA {self.ema_decay:g}")
        if self.freeze_bn is not None:
            parts.append(f"BatchNorm statistics {'frozen' if self.freeze_bn else 'trained'}")
        if self.image_size:
            parts.append(f"{self.image_size}px")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (stored in every checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "recipe") -> Recipe:
        """A recipe read back from a checkpoint: every field type-checked, unknown ones named.

        Raises:
            MetadataError: a field of the wrong type or an unknown field.
            ConfigurationError: a value out of range.
        """
        from ..schema import Fields

        f = Fields(data, where)
        known = {fl.name: fl for fl in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known)) if isinstance(data, dict) else []
        if unknown:
            raise f.error(unknown[0], "not a recipe field (a checkpoint from another omnizoo?)")
        values: dict[str, Any] = {}
        for name, fl in known.items():
            if name not in data:
                continue
            kind = str(fl.type)
            if data[name] is None and "None" in kind:
                values[name] = None
            elif kind.startswith("int"):
                values[name] = f.integer(name)
            elif kind.startswith("float"):
                values[name] = f.number(name)
            elif kind.startswith("bool"):
                values[name] = f.optional_flag(name)
            else:
                values[name] = f.text(name, max_len=64)
        return cls(**values)

    def differences(self, other: Recipe) -> list[str]:
        """Fields whose value differs from ``other``'s, as ``name: self -> other``."""
        return [
            f"{fl.name}: {getattr(self, fl.name)!r} -> {getattr(other, fl.name)!r}"
            for fl in dataclasses.fields(self)
            if getattr(self, fl.name) != getattr(other, fl.name)
        ]
