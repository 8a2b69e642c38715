"""The one table of model sources: each name, where its adapter class lives, and (by its
position) the default order in which a bare model name is resolved.

>>> source_names()
('torchvision', 'timm', 'cadene', 'efficientnet', 'onnx')
>>> adapter_path("timm")
'omnizoo.sources.timm.adapter:TimmSource'
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigurationError

__all__ = ["SOURCES", "adapter_path", "resolution_order", "source_names"]

#: name -> "module:Class" of its :class:`~omnizoo.sources.base.SourceAdapter`, in the default
#: resolution order (``OMNIZOO_SOURCE_ORDER`` reorders it).
SOURCES: dict[str, str] = {
    "torchvision": "omnizoo.sources.torchvision.adapter:TorchvisionSource",
    "timm": "omnizoo.sources.timm.adapter:TimmSource",
    "cadene": "omnizoo.sources.cadene.adapter:CadeneSource",
    "efficientnet": "omnizoo.sources.efficientnet.adapter:EfficientNetSource",
    "onnx": "omnizoo.sources.onnx.adapter:OnnxZooSource",
}


def source_names() -> tuple[str, ...]:
    """Every source, in the default resolution order."""
    return tuple(SOURCES)


def adapter_path(source: str) -> str | None:
    """``"module:Class"`` of ``source``'s adapter, or None when there is no such source."""
    return SOURCES.get(source)


def resolution_order(preferred: Sequence[str] = ()) -> tuple[str, ...]:
    """``preferred`` sources first (``OMNIZOO_SOURCE_ORDER``), then the rest in table order.

    >>> resolution_order(("timm",))[:2]
    ('timm', 'torchvision')
    """
    unknown = [s for s in preferred if s not in SOURCES]
    if unknown:
        raise ConfigurationError(
            f"OMNIZOO_SOURCE_ORDER names unknown source(s) {unknown}; "
            f"choose from {', '.join(SOURCES)}"
        )
    named = tuple(dict.fromkeys(preferred))
    return named + tuple(s for s in SOURCES if s not in named)
