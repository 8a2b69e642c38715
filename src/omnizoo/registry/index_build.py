"""Building a source's card index: the cards its library declares, as the content of an index
file (:func:`build_payload`, saved by :mod:`omnizoo.registry.index` and shipped by
``scripts/build_prebuilt.py``).

The parameters and GFLOPs no source publishes are not counted here (that took minutes for
timm): they come from the shipped prebuilt indexes where those counted the same build
(:func:`omnizoo.registry.figures.reuse_shipped`), and the rest are listed as ``pending``, to be
counted when asked. ``count=True`` counts them all now (the prebuilt indexes themselves).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .source_index import compact, entry

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["build_payload", "rng_untouched"]


def build_payload(
    adapter: SourceAdapter, *, stream: Any = None, key: str | None = None, count: bool = False
) -> dict[str, Any]:
    """Build ``adapter``'s cards and return the index file's content (what ``load_index``
    saves and ``scripts/build_prebuilt.py`` ships), under ``key`` (default: the adapter's key
    before the build; building may change it, e.g. by fetching the ONNX manifest).

    Figures no source publishes: ``count`` counts them now (progress to ``stream``), else they
    are reused from the shipped indexes or listed under ``"pending"``. Torch's, numpy's and
    Python's global random states are left as they were."""
    from .figures import reuse_shipped

    key = adapter.index_key() if key is None else key
    pending: list[str] = []
    # counting builds models (cycles to collect); reading cards allocates only plain data
    with rng_untouched(), contextlib.nullcontext() if count else _no_gc():
        built = adapter.build_cards()
        if count:
            from ..sources.param_flops import fill_stats

            built = fill_stats(adapter, built, stream=stream)
        else:
            built, pending = reuse_shipped(adapter, key, built)
        cards = [compact(c.to_dict()) for c in built]
        payload = {
            "key": key,
            "source": adapter.name,
            "entries": [entry(c) for c in cards],
            "cards": [json.dumps(c, separators=(",", ":"), sort_keys=True) for c in cards],
        }
    if pending:
        payload["pending"] = pending
    return payload


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused: reading cards allocates some 100,000 small
    objects right after torch and the source library made 400,000, and each full collection
    that triggers walks all of them (it tripled the time of turning timm's 2,052 cards into
    JSON); the cards hold no cycles worth collecting early."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Building cards constructs models (torchvision's ViT builders draw their class token from
    torch's global generator even on the meta device), which must not change what a user's
    ``torch.manual_seed(0); create_model(...)`` gives on a cold home: the global random states
    of torch, numpy and ``random`` are put back afterwards."""
    import random

    import numpy as np
    import torch  # building imports it anyway; its state must be saved before the build

    py_state = random.getstate()
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        torch.random.set_rng_state(torch_state)
        np.random.set_state(np_state)
