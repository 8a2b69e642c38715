"""omnizoo.finetune (internal; the public API is omnizoo.__all__).

``omnizoo.finetune.fit`` is :func:`omnizoo.finetune.training.fit`, loaded on first use so that
``import omnizoo`` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["FitResult", "Recipe", "fit"]

_LAZY = {
    "fit": "omnizoo.finetune.training",
    "FitResult": "omnizoo.finetune.training",
    "Recipe": "omnizoo.finetune.recipe",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'omnizoo.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .recipe import Recipe
    from .training import FitResult, fit
