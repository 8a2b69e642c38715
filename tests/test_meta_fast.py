"""Meta-device builds skip weight init (loading/meta.py): while a model is built on the meta
device, the in-place init ops (``normal_``, ``uniform_``, ``erfinv_``, ``mul_``, ``add_``,
``clamp_``, ...) return at once for meta tensors instead of running torch's Python reference
implementations; nothing else changes: shapes and dtypes of the build, the values loaded,
real tensors inside the scope, other threads, and ``torch`` itself after the scope (an
exception included).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from omnizoo import create_model
from omnizoo.loading.meta import meta_params

#: the aten ops weight init (nn.init, timm's trunc_normal_) dispatches on a meta tensor, and
#: those torch's reference implementation of clamp_ decomposes into
INIT_OPS = frozenset(
    [
        "normal_",
        "uniform_",
        "erfinv_",
        "clamp_",
        "clamp_min_",
        "clamp_max_",
        "mul_",
        "add_",
        "sub_",
        "div_",
        "fill_",
        "zero_",
        "where",
        "bitwise_or",
        "isnan",
    ]
)


class _MetaOps(TorchDispatchMode):
    """Records the aten ops dispatched with a meta tensor among their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        flat = list(args) + list(kwargs.values())
        if any(isinstance(a, torch.Tensor) and a.is_meta for a in flat):
            self.ops.add(func.overloadpacket.__name__)
        return func(*args, **kwargs)


def _init_ops(ops: set[str]) -> set[str]:
    return ops & INIT_OPS


def _torch_state() -> dict[str, Any]:
    """What meta_params may replace while it runs, and the public nn.init functions."""
    state: dict[str, Any] = {op: torch.Tensor.__dict__.get(op) for op in INIT_OPS}
    state.update({f"getattr.{op}": getattr(torch.Tensor, op, None) for op in INIT_OPS})
    state["register_parameter"] = nn.Module.register_parameter
    state.update({f"init.{n}": getattr(nn.init, n) for n in dir(nn.init) if n.endswith("_")})
    return state


def test_init_ops_on_meta_dispatch_nothing() -> None:
    import timm.layers

    w = torch.empty(64, 32, device="meta")
    with meta_params(), _MetaOps() as seen:
        timm.layers.trunc_normal_(w, std=0.02)
        nn.init.trunc_normal_(w, std=0.02)
        nn.init.kaiming_uniform_(w, a=5**0.5)
        nn.init.normal_(w)
        nn.init.zeros_(w)
        nn.init.ones_(w)
        w.clamp_(min=-1.0, max=1.0).mul_(2.0).add_(1.0)
    assert _init_ops(seen.ops) == set(), seen.ops
    assert (w.shape, w.dtype, w.device.type) == ((64, 32), torch.float32, "meta")
    # outside the scope, the same op on meta is dispatched as torch does it
    with _MetaOps() as seen:
        w.mul_(2.0)
    assert "mul_" in seen.ops


def test_real_tensors_in_scope_and_other_threads_compute() -> None:
    inside = threading.Event()
    leave = threading.Event()
    results: dict[str, torch.Tensor] = {}

    def builder() -> None:
        with meta_params():
            inside.set()
            buf = torch.zeros(3).add_(1.0).mul_(4.0).clamp_(max=3.0)  # a real buffer
            results["buffer"] = buf
            leave.wait(10)

    t = threading.Thread(target=builder)
    t.start()
    assert inside.wait(10)
    try:  # while the other thread is in the scope, this one computes as usual
        g = torch.Generator().manual_seed(0)
        x = torch.empty(4).uniform_(-1.0, 1.0, generator=g).mul_(10.0).clamp_(-2.0, 2.0)
        g = torch.Generator().manual_seed(0)
        y = torch.clamp(torch.empty(4).uniform_(-1.0, 1.0, generator=g) * 10.0, -2.0, 2.0)
        assert torch.equal(x, y)
    finally:
        leave.set()
        t.join(10)
    assert torch.equal(results["buffer"], torch.full((3,), 3.0))


def test_torch_restored_after_an_exception_in_the_scope() -> None:
    before = _torch_state()
    with pytest.raises(ZeroDivisionError), meta_params():
        assert torch.Tensor.__dict__["clamp_"] is not before["clamp_"]  # patched inside
        with meta_params():  # nested
            nn.Linear(4, 4)
            1 / 0  # noqa: B018
    assert _torch_state() == before
    # and the skipping is gone: on meta the op is dispatched again
    with _MetaOps() as seen:
        torch.empty(2, device="meta").clamp_(min=0.0)
    assert "clamp_" in seen.ops


@pytest.mark.parametrize(
    ("name", "builder"),
    [
        ("timm:deit_tiny_patch16_224", "timm"),
        ("timm:resnet18", "timm"),
        ("torchvision:resnet18", "torchvision"),
        ("torchvision:mobilenet_v3_small", "torchvision"),
    ],
)
def test_meta_build_has_the_real_shapes_and_dtypes(name: str, builder: str) -> None:
    arch = name.split(":", 1)[1]
    if builder == "timm":
        import timm

        ref = timm.create_model(arch)
    else:
        import torchvision

        ref = torchvision.models.get_model(arch, weights=None)
    with _MetaOps() as seen:
        meta = create_model(name, device="meta")
    assert _init_ops(seen.ops) == set(), seen.ops
    got = {k: (tuple(v.shape), v.dtype) for k, v in meta.state_dict().items()}
    want = {k: (tuple(v.shape), v.dtype) for k, v in ref.state_dict().items()}
    assert got == want
    assert all(p.is_meta for p in meta.parameters())
    half = create_model(name, device="meta", dtype=torch.float16)
    assert {p.dtype for p in half.parameters()} == {torch.float16}


@pytest.fixture(scope="module")
def deit_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = {
        k: v.contiguous()
        for k, v in timm.create_model("deit_tiny_patch16_224").state_dict().items()
    }
    # values the init would never give, so that a skipped op on a real tensor would show
    sd = {k: (v * 3.0 + 0.5 if v.is_floating_point() else v) for k, v in sd.items()}
    f = tmp_path_factory.mktemp("deit") / "model.safetensors"
    save_file(sd, str(f))
    yield f, sd


def test_loaded_values_equal_the_file_bit_for_bit(deit_file: tuple[Path, dict[str, Any]]) -> None:
    f, sd = deit_file
    with _MetaOps() as seen:
        model = create_model("timm:deit_tiny_patch16_224", checkpoint_path=f)
    assert _init_ops(seen.ops) == set(), seen.ops  # the build on meta skipped the init
    report: Any = model.omnizoo_load_report
    assert report.ok, str(report)
    got = model.state_dict()
    assert set(got) == set(sd)
    for key, value in sd.items():
        assert not got[key].is_meta, key
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key].view(torch.uint8), value.view(torch.uint8)), key
    assert not any(b.is_meta for b in model.buffers())
