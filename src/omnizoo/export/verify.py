"""Proving an export right: the file, run in onnxruntime, against the torch model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExportError
from .exporters import first_line, flatten

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["verify_export"]


def verify_export(
    path: Path,
    module: nn.Module,
    example: torch.Tensor,
    *,
    atol: float,
    rtol: float,
    name: str,
) -> float:
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(
            f"verifying an ONNX export needs onnxruntime: {pip_install('export')} "
            "(or pass verify=False / --no-verify)"
        ) from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        ort_outs = session.run(None, {session.get_inputs()[0].name: example.cpu().numpy()})
    except Exception as exc:
        raise ExportError(
            f"onnxruntime cannot run the export of {name}: {first_line(exc)}"
        ) from None
    with torch.no_grad():
        ref = [t.detach().float().cpu().numpy() for t in flatten(module(example))]
    if len(ref) != len(ort_outs):
        raise ExportError(
            f"export of {name}: onnxruntime gives {len(ort_outs)} outputs, torch {len(ref)}"
        )
    worst = 0.0
    for i, (a, b) in enumerate(zip(ort_outs, ref, strict=True)):
        a = np.asarray(a, dtype=np.float32)
        if a.shape != b.shape:
            raise ExportError(
                f"export of {name}: output {i} has shape {a.shape} in onnxruntime but {b.shape} "
                "in torch (a batch size or shape baked into the graph?)"
            )
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
        max_diff = float(diff.max()) if diff.size else 0.0  # NaN if any side alone is NaN
        scale = float(np.nanmax(np.abs(b))) if b.size and not np.isnan(b).all() else 0.0
        limit = atol + rtol * scale
        worst = max_diff if np.isnan(max_diff) else max(worst, max_diff)
        if not max_diff <= limit:  # also true for NaN
            raise ExportError(
                f"export of {name} does not match the torch model: output {i} max abs diff "
                f"{max_diff:.3g} exceeds atol + rtol * max|output| = {atol:g} + {rtol:g} * "
                f"{scale:.3g} = {limit:.3g}; the file was not written"
            )
    return worst
