"""The pieces of the training loop: precision, the schedule, the optimizer of each phase,
EMA, one evaluation pass, and the progress lines.

>>> f = schedule(warmup=2, total=10, min_ratio=0.0)
>>> [round(f(s), 3) for s in (0, 1, 2, 6, 9)]
[0.333, 0.667, 1.0, 0.5, 0.038]
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from ..errors import ConfigurationError
from .recipe import Recipe

__all__ = [
    "Amp",
    "Meter",
    "build_optimizer",
    "evaluate",
    "make_amp",
    "make_ema",
    "resolve_device",
    "schedule",
]


def resolve_device(device: Any) -> Any:
    """``"auto"`` (CUDA when there is one, else the CPU), a name, or a ``torch.device``.

    Raises:
        ConfigurationError: a device torch does not know, or CUDA asked for and absent.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigurationError(f"device={device!r}: {exc}; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device={device!r}, but torch sees no CUDA device; use cpu")
    return dev


@dataclass
class Amp:
    """Mixed precision for one device: the autocast dtype (None: fp32) and the fp16 scaler."""

    device_type: str
    dtype: Any
    scaler: Any

    @property
    def name(self) -> str:
        return {None: "fp32"}.get(self.dtype, str(self.dtype).removeprefix("torch."))

    def autocast(self) -> Any:
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)


def make_amp(precision: str, device: Any) -> Amp:
    """``Recipe.precision`` made concrete for ``device`` (see :data:`.recipe.PRECISIONS`).

    Raises:
        ConfigurationError: fp16 on the CPU (use bf16), or bf16 where the device lacks it.
    """
    import torch

    kind = device.type
    if precision == "auto":
        if kind == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif kind == "cpu" and _cpu_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return Amp(kind, None, None)
    if precision == "fp16":
        if kind != "cuda":
            raise ConfigurationError("precision fp16 needs CUDA; on the CPU use bf16 or fp32")
        return Amp(kind, torch.float16, torch.amp.GradScaler("cuda"))
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigurationError("this GPU has no bf16; use --precision fp16")
    return Amp(kind, torch.bfloat16, None)


def _cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): emulated bf16 is slower
    than fp32."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def schedule(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """The learning-rate factor at optimizer step ``s``: linear warm-up over ``warmup`` steps,
    then a cosine from 1 down to ``min_ratio`` at step ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(
    model: Any, recipe: Recipe, phase: str, steps_per_epoch: int
) -> tuple[Any, Any]:
    """AdamW and its LambdaLR for ``phase``: ``"head"`` (only the trainable head, at
    ``head_lr``, cosine without warm-up) or ``"full"`` (:func:`omnizoo.param_groups` with
    layer decay, warm-up then cosine over the remaining epochs)."""
    import torch

    from .param_groups import param_groups

    if phase == "head":
        lr, layer_decay = recipe.head_lr_value, None
        epochs, warmup = recipe.head_epochs, 0
    else:
        lr, layer_decay = recipe.lr, recipe.layer_decay
        epochs = recipe.epochs - recipe.head_epochs
        warmup = round(recipe.warmup_epochs * steps_per_epoch)
    groups = param_groups(model, lr=lr, weight_decay=recipe.weight_decay, layer_decay=layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr)
    total = max(1, epochs * steps_per_epoch)
    factor = schedule(min(warmup, total - 1), total, recipe.min_lr_ratio)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_ema(model: Any, decay: float) -> Any:
    """An exponential moving average of ``model``'s parameters and buffers."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def evaluate(
    model: Any,
    loader: Any,
    device: Any,
    amp: Amp,
    channels_last: bool,
    world: Any,
    bad: dict[str, str] | None = None,
) -> dict[str, float]:
    """Loss, top-1 and top-5 (percent) over ``loader``, summed over every process; images
    that could not be read are added to ``bad`` (path -> error)."""
    import torch
    import torch.nn.functional as F

    was = model.training
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0]  # loss, top1, top5, count
    with torch.no_grad():
        for batch in loader:
            for item in batch.bad:
                if bad is not None:
                    bad.setdefault(item.path, item.error)
            if batch.labels is None:
                continue
            x, y = _to(batch, device, channels_last)
            with amp.autocast():
                logits = model(x)
            logits = logits.float()
            sums[0] += float(F.cross_entropy(logits, y, reduction="sum"))
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            sums[1] += float((top[:, 0] == y).sum())
            sums[2] += float((top == y[:, None]).any(dim=1).sum())
            sums[3] += len(y)
    model.train(was)
    loss, top1, top5, n = world.all_sum(sums)
    n = max(n, 1.0)
    return {"val_loss": loss / n, "val_top1": 100 * top1 / n, "val_top5": 100 * top5 / n}


def _to(batch: Any, device: Any, channels_last: bool) -> tuple[Any, Any]:
    import torch

    x = batch.images.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, batch.labels.to(device, non_blocking=True)


class Meter:
    """Progress of one epoch: a tqdm bar on a terminal, else a line every ``every`` steps,
    with the running loss, top-1 and images per second."""

    def __init__(
        self,
        epoch: int,
        epochs: int,
        total: int,
        done: int,
        *,
        stream: IO[str] | None = None,
        enabled: bool = True,
        every: int = 20,
    ) -> None:
        self.stream = stream or sys.stderr
        self.desc = f"epoch {epoch + 1}/{epochs}"
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.step = done
        self.images = 0
        self.started = time.perf_counter()
        self.bar: Any = None
        # one rule for when a bar is drawn (a terminal, or a Jupyter kernel's own stderr)
        from ..weights.progress_bar import bar_wanted, make_bar

        if enabled and bar_wanted(self.stream):
            self.bar = make_bar(
                self.stream,
                total=total,
                initial=done,
                desc=self.desc,
                unit="step",
                dynamic_ncols=True,
            )

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.images / elapsed if elapsed > 0 else 0.0

    def update(self, images: int, loss: float, top1: float) -> None:
        self.step += 1
        self.images += images
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{top1:.1f}%", img_s=f"{self.rate:.0f}")
        elif self.step % self.every == 0 or self.step == self.total:
            print(
                f"{self.desc} {self.step}/{self.total} loss {loss:.4f} acc {top1:.1f}% "
                f"{self.rate:.0f} img/s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
