"""This machine, as a speed measurement depends on it: :func:`machine_fingerprint` (the key
of ``OMNIZOO_HOME/measured/``, :mod:`.measured`). Read from ``/proc`` and package metadata,
so it imports neither torch nor onnxruntime (``omnizoo compare`` stays fast).

>>> fp, parts = machine_fingerprint()
>>> len(fp), sorted(parts) == sorted(MACHINE_KEYS)
(16, True)
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

__all__ = ["MACHINE_KEYS", "cpu_model", "machine_fingerprint"]

#: The readable parts of a fingerprint, in the order they are hashed.
MACHINE_KEYS = ("cpu", "cores", "memory_gib", "gpu", "arch", "torch", "onnxruntime")


def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what ``platform`` knows)."""
    return (
        _first_line("/proc/cpuinfo", "model name")
        or platform.processor()
        or platform.machine()
        or "unknown"
    )


def _gpus() -> str:
    # The NVIDIA driver's own files, so that the fingerprint imports no torch (``compare``)
    root = Path("/proc/driver/nvidia/gpus")
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return "none"
    names = [_first_line(str(e / "information"), "Model") for e in entries]
    return ", ".join(n for n in names if n) or "none"


def _memory_gib() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return "unknown"
    return f"{total / 2**30:.0f}"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "none"


def machine_fingerprint() -> tuple[str, dict[str, str]]:
    """``(fingerprint, parts)``: what a speed measurement depends on, hashed to 16 hex digits,
    and its readable parts (``MACHINE_KEYS``). Imports neither torch nor onnxruntime.

    >>> fp, parts = machine_fingerprint()
    >>> fp == machine_fingerprint()[0] and parts["cores"] == str(os.cpu_count())
    True

    Raises:
        Nothing: a part that cannot be read is ``"unknown"`` (or ``"none"``).
    """
    parts = {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count() or "unknown"),
        "memory_gib": _memory_gib(),
        "gpu": _gpus(),
        "arch": platform.machine() or "unknown",
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
    }
    text = "|".join(f"{k}={parts[k]}" for k in MACHINE_KEYS)
    return hashlib.sha256(text.encode()).hexdigest()[:16], parts
