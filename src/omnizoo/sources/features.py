"""One ``feature_info`` type for every source's ``features_only`` models, with timm's API.

timm's own ``FeatureInfo`` objects (on timm models) count as instances of :class:`FeatureInfo`
too, so ``isinstance(model.feature_info, FeatureInfo)`` holds for every source, and
``channels()``, ``reduction()``, ``module_name()``, ``get()``, ``get_dicts()`` mean the same.

>>> info = FeatureInfo(
...     [{"num_chs": 64, "reduction": 4, "module": "layer1"},
...      {"num_chs": 128, "reduction": 8, "module": "layer2"}],
...     out_indices=1,
... )
>>> info.channels(), info.reduction(), info.module_name(), len(info)
([128], [8], ['layer2'], 2)
>>> take_indices(5, 2), take_indices(5, (0, -1)), take_indices(5, None)
([3, 4], [0, 4], [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from typing import Any

from ..errors import UnsupportedError

__all__ = ["FeatureInfo", "register_timm_feature_info", "take_indices"]

OutIndices = int | Sequence[int] | None


def take_indices(num_levels: int, out_indices: OutIndices, *, name: str = "model") -> list[int]:
    """Absolute level indices for ``out_indices``, with timm's meaning (``feature_take_indices``):
    None -> every level; an int n -> the last n levels; a sequence -> those levels (negative
    ones count from the end). Out of range raises :class:`UnsupportedError`."""
    if out_indices is None:
        return list(range(num_levels))
    if isinstance(out_indices, bool) or not isinstance(out_indices, (int, Sequence)):
        raise UnsupportedError(
            f"{name}: out_indices must be an int (the last n levels) or a sequence of level "
            f"indices, got {out_indices!r}"
        )
    if isinstance(out_indices, int):
        if not 0 < out_indices <= num_levels:
            raise UnsupportedError(
                f"{name}: out_indices={out_indices} asks for the last {out_indices} levels; "
                f"it has {num_levels} (1 to {num_levels})"
            )
        return [num_levels - out_indices + i for i in range(out_indices)]
    taken: list[int] = []
    for i in out_indices:
        idx = num_levels + int(i) if int(i) < 0 else int(i)
        if not 0 <= idx < num_levels:
            raise UnsupportedError(
                f"{name}: feature index {i} is out of range; it has {num_levels} levels "
                f"(0 to {num_levels - 1}, or negative from the end)"
            )
        taken.append(idx)
    return taken


class FeatureInfo(abc.ABC):  # noqa: B024 - an ABC only so that timm's class can be registered
    """Per-level facts of a feature extractor: ``num_chs``, ``reduction``, ``module``.

    ``info`` lists every level the model has; ``out_indices`` are the levels its forward
    returns, and the accessors answer for those (or for ``idx`` when given), as timm's do.

    >>> from omnizoo import FeatureInfo
    >>> info = FeatureInfo(
    ...     [{"num_chs": 64, "reduction": 4, "module": "layer1"},
    ...      {"num_chs": 128, "reduction": 8, "module": "layer2"}], out_indices=(1,))
    >>> info.channels(), info.reduction()
    ([128], [8])

    Raises:
        UnsupportedError: ``out_indices`` that are not level indices, or out of range.
    """

    def __init__(self, info: Sequence[dict[str, Any]], out_indices: OutIndices = None):
        self.info = [dict(d, index=d.get("index", i)) for i, d in enumerate(info)]
        self.out_indices = tuple(take_indices(len(self.info), out_indices))

    def from_other(self, out_indices: OutIndices) -> FeatureInfo:
        """The same levels with other ``out_indices``."""
        return FeatureInfo(copy.deepcopy(self.info), out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of each output level (``idx`` None), of level ``idx``, or of levels ``idx``."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, Sequence):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(
        self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None
    ) -> Any:
        """The info dicts (restricted to ``keys``) of the output levels, or of ``idx``."""
        indices: Any = self.out_indices if idx is None else idx
        if isinstance(indices, Sequence):
            return [self._dict(i, keys) for i in indices]
        return self._dict(indices, keys)

    def _dict(self, i: int, keys: Sequence[str] | None) -> dict[str, Any]:
        return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of the output levels (or of ``idx``)."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Output stride of the output levels (or of ``idx``)."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Module name of the output levels (or of ``idx``)."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


def register_timm_feature_info() -> None:
    """Make timm's ``FeatureInfo`` count as a :class:`FeatureInfo` (when timm is imported)."""
    try:
        from timm.models._features import FeatureInfo as TimmFeatureInfo
    except ImportError:  # pragma: no cover - timm not installed
        return
    FeatureInfo.register(TimmFeatureInfo)
