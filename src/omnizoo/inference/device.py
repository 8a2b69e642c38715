"""Device resolution and the per-device inference settings (autocast dtype, channels_last).

``"auto"`` means CUDA when a CUDA device is usable, else the CPU. Asking for a device that is
not there (``"cuda"`` on a machine without a GPU, ``"cuda:3"`` on a one-GPU machine, ``"mps"``
without Metal) raises :class:`~omnizoo.errors.ConfigurationError` saying what is available,
instead of failing later inside the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = ["autocast_dtype", "available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """Devices torch can use here, e.g. ``["cpu", "cuda:0"]``."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(device: Any = "auto") -> torch.device:
    """``"auto"`` / None -> cuda if available else cpu; anything else is checked to exist."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigurationError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    here = ", ".join(available_devices())
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"device={device!r}: no CUDA device is available here (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda}); available: {here}. "
                "Use device='auto' or 'cpu'."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigurationError(
                f"device={device!r}: only {count} CUDA device(s) here; available: {here}"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigurationError(f"device={device!r}: MPS is not available; available: {here}")
    elif dev.type != "cpu":
        raise ConfigurationError(f"device={device!r} is not supported; available: {here}")
    return dev


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for inference on ``device`` (None: run in float32).

    ``precision``: ``"auto"`` (bf16 on CUDA devices that support it, else fp16 on CUDA; float32
    on CPU, where autocast is rarely faster and changes results), ``"fp32"``, ``"bf16"``,
    ``"fp16"``.
    """
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigurationError(f"precision={precision!r}; use auto, fp32, bf16 or fp16")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None
