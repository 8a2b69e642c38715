"""How the tests compare numbers, in one place.

State dicts are compared bit for bit: loading must not change a single bit of a tensor.
Forward outputs are compared with a tight tolerance, never bit for bit: the same weights and
input give outputs that differ by 1e-7..1e-6 depending on which kernels oneDNN picks, and that
choice depends on the CPU (AVX-512 or not) and on the memory alignment of the weights (a
memory-mapped safetensors file places tensors at any byte offset). A test that demands
bit-exact outputs passes or fails by machine, not by code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["OUTPUT_ATOL", "OUTPUT_RTOL", "assert_outputs_close", "assert_state_dicts_equal"]

OUTPUT_RTOL = 1e-5
OUTPUT_ATOL = 1e-6


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def assert_outputs_close(actual: Any, expected: Any, *, msg: str = "") -> None:
    """Forward outputs (tensors, or lists/dicts of them) agree within 1e-6 + 1e-5 of the
    largest magnitude of each expected tensor."""
    a, e = _tensors(actual), _tensors(expected)
    assert len(a) == len(e) and a, f"{msg}: {len(a)} vs {len(e)} output tensors"
    for x, y in zip(a, e, strict=True):
        if x.is_quantized:
            x = x.dequantize()
        if y.is_quantized:
            y = y.dequantize()
        scale = float(y.detach().abs().max()) if y.numel() else 0.0
        torch.testing.assert_close(
            x, y, rtol=0.0, atol=OUTPUT_ATOL + OUTPUT_RTOL * scale, msg=msg or None
        )


def assert_state_dicts_equal(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Same keys, and every tensor identical bit for bit (dtype, shape and values)."""
    assert list(actual) == list(expected) or set(actual) == set(expected), sorted(
        set(actual) ^ set(expected)
    )[:10]
    for key, value in expected.items():
        got = actual[key]
        if not isinstance(value, torch.Tensor):
            continue
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(got, value), key
