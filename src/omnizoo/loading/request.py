"""The user's ``create_model`` arguments, normalised once, as every source adapter sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CreateRequest", "OutIndices", "is_meta_device"]

#: timm's meaning: None = every level; an int n = the last n levels; a sequence = those levels
#: (negative indices count from the end).
OutIndices = int | tuple[int, ...] | None


def is_meta_device(device: Any) -> bool:
    """Whether ``device`` is the meta device (``"meta"`` or ``torch.device("meta")``): the build
    makes the architecture only and reads nothing. The one place this is decided."""
    return device is not None and str(device) == "meta"


@dataclass(frozen=True)
class CreateRequest:
    """What to build and load. Made by :func:`omnizoo.create_model`, read by the adapters."""

    pretrained: bool = False
    #: A local file to load: downloaded verified weights, or the user's own checkpoint.
    weights_path: Path | None = None
    #: True when ``weights_path`` (or ``state_dict``) is the user's own: its head size and keys
    #: may differ from the card's, and it was never verified by hash.
    user_checkpoint: bool = False
    #: Weights handed over in memory (timm's ``pretrained_cfg={"state_dict": ...}``).
    state_dict: Any = None
    #: Whether the bytes of ``weights_path`` passed a hash check (see the weights cache).
    verified: bool = False
    num_classes: int | None = None
    in_chans: int | None = None
    features_only: bool = False
    out_indices: OutIndices = None
    #: Missing or unexpected checkpoint keys raise unless False (then the report says them).
    strict: bool = True
    #: Where and in which dtype the parameters live; honoured while building, not after.
    device: Any = None
    dtype: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Globals a trusted training checkpoint may build under ``weights_only=True``
    #: (``create_model(trust=...)``; see :mod:`omnizoo.loading.trust`).
    trust: tuple[Any, ...] = ()

    @property
    def on_meta(self) -> bool:
        """Whether the model is to be built on the meta device (see :func:`is_meta_device`)."""
        return is_meta_device(self.device)

    @property
    def has_weights(self) -> bool:
        """Whether anything is to be loaded (a file or an in-memory state dict)."""
        return self.weights_path is not None or self.state_dict is not None

    def read_weights(self) -> dict[str, Any]:
        """The state dict to load: the one handed over in memory (a copy), else
        ``weights_path`` read safely (:func:`omnizoo.loading.state_dict_files.load_checkpoint`)."""
        if self.state_dict is not None:
            return dict(self.state_dict)
        if self.weights_path is None:
            raise ValueError("read_weights() on a request without weights (see has_weights)")
        from .state_dict_files import load_checkpoint

        return load_checkpoint(self.weights_path, verified=self.verified, trust=self.trust)
