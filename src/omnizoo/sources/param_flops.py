"""Parameter counts and GFLOPs of a card's architecture, counted on the meta device.

Used when a source publishes no figures for a card: the architecture is built on the meta
device (no memory; the in-place init ops, which meta tensors run through slow Python
reference implementations, are skipped) and one image of the card's input size goes through
it on meta tensors while a dispatch mode adds up the formulas of ``torch.utils.flop_counter``
(matmuls, convolutions, attention). No real arithmetic runs, so a 1B-parameter model costs
about a second.

Conventions: ``gflops`` are billions of multiply-accumulates (torchvision's ``_ops``, timm's
GMACs and the papers' "FLOPs" count one fused multiply-add once; ``torch.utils.flop_counter``
counts it twice, so its total is halved). Operations without a formula (elementwise,
normalisation, pooling) count nothing, as in torchvision's and timm's figures.

>>> import torch
>>> with meta_build():
...     model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
...                                 torch.nn.Linear(8 * 30 * 30, 10))
>>> count_params(model)
72234
>>> round(count_gflops(model, (3, 32, 32)) * 1e9)  # 8*3*3*3 MACs at 30x30, then 7200x10
266400
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ..loading.meta import SKIPPED_ON_META

if TYPE_CHECKING:
    from torch import nn

    from ..values.card import ModelCard
    from .base import SourceAdapter

__all__ = [
    "COUNTED",
    "Figure",
    "apply_figure",
    "count_figures",
    "count_gflops",
    "count_one",
    "count_params",
    "counted_builds",
    "fill_stats",
    "meta_build",
    "needs_count",
    "stats_key",
]

#: The provenance text of counted figures (the torch version is added where they are counted).
COUNTED = "counted: meta-device build, torch.utils.flop_counter formulas"

# In-place ops that only fill a tensor (init); on a meta tensor they return it unchanged: the
# list the meta builds of create_model skip (loading.meta), plus copy_ and floor_, which only a
# count may skip (a build's loader copies into real tensors inside the same scope)
_FILL_OPS = (*SKIPPED_ON_META, "copy_", "floor_")


def _skip_fill_mode() -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    packets = {getattr(torch.ops.aten, name) for name in _FILL_OPS}

    class _SkipFill(TorchDispatchMode):
        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            if (
                func._overloadpacket in packets
                and args
                and isinstance(args[0], torch.Tensor)
                and args[0].is_meta
            ):
                arg0 = func._schema.arguments[0]
                if arg0.alias_info is not None and arg0.alias_info.is_write:
                    return args[0]
            return func(*args, **(kwargs or {}))

    return _SkipFill()


def _host_ranges_mode() -> Any:
    import torch
    from torch.overrides import TorchFunctionMode

    ranges = {torch.linspace, torch.logspace}

    class _HostRanges(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            kwargs = kwargs or {}
            if func in ranges and kwargs.get("device") is None:
                kwargs["device"] = "cpu"
            return func(*args, **kwargs)

    return _HostRanges()


@contextlib.contextmanager
def meta_build() -> Iterator[None]:
    """Build models inside this block: every tensor is created on the meta device and init
    ops are skipped (this thread only; torch's global random state is not drawn from).

    ``torch.linspace``/``logspace`` without a device are the exception: they stay on the CPU.
    Builders read their values (timm 1.0.9: ``[x.item() for x in torch.linspace(0,
    drop_path_rate, depth)]``; newer timm passes ``device='cpu'`` itself), which a meta tensor
    does not have; a tensor that ends in the model is moved to meta by the caller."""
    import torch

    with torch.device("meta"), _host_ranges_mode(), _skip_fill_mode(), _quiet():
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def count_params(model: nn.Module) -> int:
    """The number of parameters (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _counting_mode() -> Any:
    """A dispatch mode adding up ``torch.utils.flop_counter``'s formulas, as its
    ``FlopCounterMode`` does but without its per-module tracking (whose backward hooks fail on
    some models, e.g. timm's CaiT, and cost time)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    passthrough = {
        aten.is_contiguous.default,
        aten.is_contiguous.memory_format,
        aten.is_strides_like_format.default,
        aten.is_non_overlapping_and_dense.default,
        aten.size.default,
        aten.sym_size.default,
        aten.stride.default,
        aten.sym_stride.default,
        aten.storage_offset.default,
        aten.sym_storage_offset.default,
        aten.numel.default,
        aten.sym_numel.default,
        aten.dim.default,
        torch.ops.prim.layout.default,
    }
    for name in ("sym_is_contiguous",):
        op = getattr(aten, name, None)
        if op is not None:
            passthrough.add(op.default)

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.flops = 0

        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            kwargs = kwargs or {}
            if func in passthrough:
                return NotImplemented
            packet = func._overloadpacket
            if packet not in flop_registry and func is not torch.ops.prim.device.default:
                with self:
                    out = func.decompose(*args, **kwargs)
                    if out is not NotImplemented:
                        return out
            out = func(*args, **kwargs)
            formula = flop_registry.get(packet)
            if formula is not None:
                self.flops += int(formula(*args, **kwargs, out_val=out))
            return out

    return _Count()


def count_gflops(model: nn.Module, input_size: Sequence[int]) -> float:
    """Billions of multiply-accumulates for one image of ``input_size`` (C, H, W) through
    ``model`` (in eval mode), on meta tensors."""
    import torch

    model.eval()
    x = torch.empty((1, *(int(v) for v in input_size)), device="meta")
    counter = _counting_mode()
    with torch.no_grad(), counter, _quiet():
        model(x)
    return counter.flops / 2e9


#: What counting gives for one build: (parameters, GFLOPs, why it failed); None where unknown.
Figure = tuple[int | None, float | None, str | None]

_counted: list[tuple[str, str]] = []  # (source, arch) of every meta build this process counted


def counted_builds() -> tuple[tuple[str, str], ...]:
    """The (source, architecture) of every build this process counted, in order (how tests
    see that a listing counted nothing, or only what it was asked for)."""
    return tuple(_counted)


def stats_key(card: ModelCard) -> tuple[str, int, tuple[int, ...]]:
    """What a card's counted figures depend on: its architecture, head size and input size."""
    return (card.arch, int(card.num_classes), tuple(int(v) for v in card.data.input_size))


def count_one(adapter: SourceAdapter, card: ModelCard) -> Figure:
    """Build ``card``'s architecture on the meta device and count it; a builder or forward
    that fails gives (None, None, why) instead of raising."""
    _counted.append((adapter.name, card.arch))
    try:
        with meta_build():
            # .to("meta"): a tensor some builder made on the CPU (a legacy constructor)
            model = adapter.meta_model(card).to("meta")
        params = count_params(model)
        return params, round(count_gflops(model, card.data.input_size), 6), None
    except Exception as exc:  # any builder or forward failure: no figure, a note
        return None, None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def count_figures(
    adapter: SourceAdapter,
    cards: Sequence[ModelCard],
    *,
    stream: TextIO | None = None,
    announce_after: float = 0.0,
    why: str = "once per library version",
) -> dict[tuple[Any, ...], Figure]:
    """:func:`stats_key` -> figure for each distinct build of ``cards`` (one build each).

    Progress goes to ``stream`` (None: silent) once counting has run ``announce_after``
    seconds (0: before it starts): a line saying what is counted and ``why``, one every 5 s,
    and one at the end."""
    groups: dict[tuple[Any, ...], ModelCard] = {}
    for card in cards:
        groups.setdefault(stats_key(card), card)
    results: dict[tuple[Any, ...], Figure] = {}
    started = last = time.monotonic()
    announced = False
    for i, (key, first) in enumerate(groups.items(), 1):
        now = time.monotonic()
        if stream is not None and not announced and now - started >= announce_after:
            announced = True
            last = _say(
                stream,
                f"omnizoo: counting parameters and GFLOPs of {len(groups)} {adapter.name} "
                f"architectures on the meta device ({why})"
                + (f": {i - 1} done in {now - started:.0f} s" if i > 1 else ""),
            )
        results[key] = count_one(adapter, first)
        now = time.monotonic()
        if announced and stream is not None and (now - last > 5 or i == len(groups)):
            last = _say(stream, f"omnizoo:   {i}/{len(groups)} counted ({now - started:.0f} s)")
    return results


def _say(stream: TextIO, line: str) -> float:
    stream.write(line + "\n")
    stream.flush()
    return time.monotonic()


def apply_figure(card: ModelCard, figure: Figure, where: str = COUNTED) -> ModelCard:
    """``card`` with the figures it lacks taken from ``figure`` (their provenance ``where``;
    the GFLOPs' names the input size), or a note when counting failed."""
    import dataclasses

    params, gflops, problem = figure
    provenance = dict(card.provenance)
    changes: dict[str, Any] = {}
    if card.num_params is None and params is not None:
        changes["num_params"] = params
        provenance["num_params"] = where
    if card.gflops is None and gflops is not None:
        changes["gflops"] = gflops
        provenance["gflops"] = f"{where} at {'x'.join(map(str, card.data.input_size))}"
    if problem is not None:
        note = f"parameters/GFLOPs not counted: the meta-device build failed ({problem})"
        if note not in card.notes:
            changes["notes"] = (*card.notes, note)
    if not changes:
        return card
    changes["provenance"] = tuple(provenance.items())
    return dataclasses.replace(card, **changes)


def needs_count(card: ModelCard) -> bool:
    """Whether a card lacks a figure counting would give."""
    return card.num_params is None or card.gflops is None


def fill_stats(
    adapter: SourceAdapter,
    cards: list[ModelCard],
    *,
    stream: TextIO | None = None,
) -> list[ModelCard]:
    """``cards`` with ``num_params`` and ``gflops`` counted where the source published none
    (the eager path of ``scripts/build_prebuilt.py``; the registry counts on demand).

    Cards sharing an architecture, head size and input size are built once, with
    ``adapter.meta_model``. A card that cannot be built or run on the meta device keeps None
    and gets a note saying why: counting never fails a build. Progress goes to ``stream``.
    """
    todo = [c for c in cards if needs_count(c)]
    if not todo or not adapter.countable:
        return cards
    figures = count_figures(adapter, todo, stream=stream)
    return [apply_figure(c, figures[stats_key(c)]) if needs_count(c) else c for c in cards]
