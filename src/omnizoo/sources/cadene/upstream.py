"""pretrainedmodels itself: importing it, calling its builders quietly, its quirks, and the
checkpoint key renames its torchvision-backed wrappers need."""

from __future__ import annotations

import contextlib
import re
import threading
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import CheckpointError, ConfigurationError, UnsupportedError

__all__ = [
    "SQUEEZENETS",
    "TAG_SPELLING",
    "build_upstream",
    "fix_quirks",
    "import_pretrainedmodels",
    "settings_key_for_tag",
    "tag_for_settings_key",
    "translate_checkpoint_keys",
    "unsupported",
]


#: pretrained_settings key -> omnizoo tag (the name grammar has no ``+``).
TAG_SPELLING: dict[str, str] = {
    "imagenet": "imagenet",
    "imagenet+background": "imagenet_background",
    "imagenet+5k": "imagenet_5k",
}


# The torchvision-backed wrappers: built model key prefix <- torchvision checkpoint key prefix.
_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


_DENSENETS = ("densenet121", "densenet169", "densenet201", "densenet161")


_VGGS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


SQUEEZENETS = ("squeezenet1_0", "squeezenet1_1")


_TV_WRAPPERS = frozenset((*_RESNETS, *_DENSENETS, *_VGGS, *SQUEEZENETS, "alexnet", "inceptionv3"))


def _tv_key_map(arch: str) -> tuple[tuple[str, str], ...]:
    """(torchvision prefix, Cadene prefix) pairs for one wrapper; exact module renames."""
    if arch in _RESNETS or arch in ("inceptionv3", "xception"):
        # (xception is not a torchvision wrapper, but it renames fc -> last_linear after
        # loading its file the same way)
        return (("fc.", "last_linear."),)
    if arch in _DENSENETS:
        return (("classifier.", "last_linear."),)
    if arch == "alexnet":
        return (
            ("features.", "_features."),
            ("classifier.1.", "linear0."),
            ("classifier.4.", "linear1."),
            ("classifier.6.", "last_linear."),
        )
    if arch in _VGGS:
        return (
            ("features.", "_features."),
            ("classifier.0.", "linear0."),
            ("classifier.3.", "linear1."),
            ("classifier.6.", "last_linear."),
        )
    if arch in SQUEEZENETS:
        return (("classifier.1.", "last_conv."),)
    return ()


# DenseNet checkpoints from before torch 0.4 name layers 'norm.1' etc. (upstream's
# torchvision_models.update_state_dict does the same rename).
_DENSE_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def tag_for_settings_key(key: str) -> str:
    """The omnizoo tag for a ``pretrained_settings`` key (``imagenet+5k`` -> ``imagenet_5k``)."""
    return TAG_SPELLING.get(key, re.sub(r"[^A-Za-z0-9_]+", "_", key))


def settings_key_for_tag(tag: str) -> str:
    """Inverse of :func:`tag_for_settings_key`."""
    for key, value in TAG_SPELLING.items():
        if value == tag:
            return key
    return tag


def import_pretrainedmodels() -> Any:
    from ...errors import DependencyError, pip_install

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pretrainedmodels
    except ImportError as exc:
        raise DependencyError(
            f"the cadene source needs pretrainedmodels, six and munch: {pip_install('cadene')} "
            f"({exc})"
        ) from exc
    return pretrainedmodels


class _TorchvisionShim:
    """Stands in for ``torchvision.models`` inside pretrainedmodels' wrappers.

    ``models.resnet18(pretrained=False)`` becomes ``models.resnet18(weights=None)``: the same
    architecture and initialisation, without the deprecated argument (and its warnings).
    """

    def __init__(self, real: Any):
        self._real = real

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._real, name)
        if not callable(fn):
            return fn

        def build(pretrained: Any = False, **kwargs: Any) -> Any:
            if pretrained:
                raise ConfigurationError("omnizoo never lets pretrainedmodels download weights")
            kwargs.setdefault("weights", None)
            if name == "inception_v3":
                # torchvision's default for weights=None, spelled out (silences a FutureWarning)
                kwargs.setdefault("init_weights", True)
                kwargs.setdefault("aux_logits", True)
            return fn(**kwargs)

        return build


_SHIM_LOCK = threading.RLock()


@contextlib.contextmanager
def _quiet_torchvision(pm: Any) -> Iterator[None]:
    """Swap pretrainedmodels' ``models`` global for :class:`_TorchvisionShim` while building."""
    module = pm.models.torchvision_models
    with _SHIM_LOCK:
        real = module.models
        if isinstance(real, _TorchvisionShim):  # re-entrant use
            yield
            return
        module.models = _TorchvisionShim(real)
        try:
            yield
        finally:
            module.models = real


def build_upstream(pm: Any, arch: str, num_classes: int) -> Any:
    """``pretrainedmodels.<arch>(num_classes, pretrained=None)``, quietly."""
    builder = pm.__dict__[arch]
    with _quiet_torchvision(pm), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.nn\..*")
        return builder(num_classes=num_classes, pretrained=None)


def _squeezenet_logits(self: Any, features: Any) -> Any:
    # upstream's modify_squeezenets logits, plus the flatten upstream forgot
    x = self.dropout(features)
    x = self.last_conv(x)
    x = self.relu(x)
    x = self.avgpool(x)
    return x.flatten(1)


def fix_quirks(arch: str, model: Any) -> None:
    if arch in SQUEEZENETS:
        model.logits = types.MethodType(_squeezenet_logits, model)
    if arch == "inceptionv3":
        model.aux_logits = False


def translate_checkpoint_keys(
    arch: str, state_dict: Mapping[str, Any], model_keys: set[str]
) -> dict[str, Any]:
    """Rename torchvision-format keys (``fc.weight``) to the built model's (``last_linear...``).

    Keys already in ``model_keys`` are kept as they are, so a state dict saved from an
    omnizoo/pretrainedmodels model loads too.
    """
    pairs = _tv_key_map(arch)
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = key
        if arch in _DENSENETS:
            m = _DENSE_LEGACY.match(new)
            if m:
                new = m.group(1) + m.group(2)
        if new not in model_keys:
            for old_prefix, new_prefix in pairs:
                if new.startswith(old_prefix):
                    new = new_prefix + new[len(old_prefix) :]
                    break
        if new in out:
            raise CheckpointError(f"checkpoint keys {key!r} and another both map to {new!r}")
        out[new] = value
    return out


def unsupported(what: str) -> UnsupportedError:
    return UnsupportedError(
        f"{what} is not supported for cadene models; use model.features(x) for the last "
        "feature map, or the timm/torchvision version of the architecture for features_only"
    )
