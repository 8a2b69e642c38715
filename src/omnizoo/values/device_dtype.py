"""The types of the ``device=`` and ``dtype=`` arguments of the public callables, in one place.

``create_model``, the ``Predictor`` and the other public callables take a device and a dtype
the way torch does, plus names: ``device="cpu"``, ``"cuda:1"``, ``torch.device("cuda")``
(the Predictor also ``"auto"``); ``dtype=torch.float16`` or ``"float16"`` / ``"torch.float16"``.
Annotations only: torch is imported for type checkers, never at run time.

>>> from omnizoo.values.device_dtype import DeviceLike, DtypeLike
>>> DeviceLike
'str | torch.device'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # pragma: no cover - annotations only
    import torch

__all__ = ["DeviceLike", "DtypeLike"]

#: A device: a name (``"cpu"``, ``"cuda:1"``, ``"meta"``, ``"auto"`` where documented) or a
#: ``torch.device``.
DeviceLike: TypeAlias = "str | torch.device"
#: A dtype: a ``torch.dtype`` or its name (``"float16"``, ``"torch.bfloat16"``).
DtypeLike: TypeAlias = "torch.dtype | str"
