"""Cadene's ``pretrainedmodels`` (0.7.4): 45 architectures, 49 sets of weights.

Cards come from ``pretrainedmodels.pretrained_settings`` (one card per settings entry); the
builders come from ``pretrainedmodels.__dict__[arch]``. Upstream quirks and what omnizoo does:

* **Tag spelling.** Settings keys contain ``+``, which the name grammar does not allow, so
  ``imagenet+background`` is spelled ``imagenet_background`` and ``imagenet+5k`` is spelled
  ``imagenet_5k`` (:data:`TAG_SPELLING`). ``cadene:inceptionv4.imagenet_background`` is the
  1001-way head (index 0 = background, ``label_offset=1``); ``cadene:inceptionv4.imagenet`` is
  the same file with rows ``[1:]`` of the head kept, as upstream does.
* **Hashes.** Upstream loads with ``model_zoo.load_url`` (``check_hash=False``) so the 8-9 hex
  sha256 prefixes in the file names are never checked; the cards record them as
  ``WeightsFile.hash_prefix`` and omnizoo's cache verifies them. 32 files live on plain-http
  ``data.lip6.fr``; four of them are re-hosted (same name, same bytes) on timm's GitHub release
  ``v0.1-cadene`` and that copy is listed as a fallback URL.
* **``pretrained=False``** raises ``KeyError`` in 32 builders; omnizoo always builds with
  ``pretrained=None`` and loads verified bytes itself.
* **Defaults that fail.** ``nasnetalarge()``/``pnasnet5large()``/``nasnetamobile()`` default to
  ``num_classes=1001`` (``nasnetalarge()`` then fails its own assert); omnizoo always passes the
  card's ``num_classes``.
* **torchvision's deprecated ``pretrained=``.** The 21 torchvision wrappers call
  ``models.X(pretrained=False)``; omnizoo builds them through a shim that calls
  ``models.X(weights=None)`` instead (no deprecation warnings; keeps working once torchvision
  drops ``pretrained=``).
* **SqueezeNet** returns ``[N, 1000, 1, 1]`` upstream; omnizoo's returns ``[N, 1000]``.
* **InceptionV3** returns ``(logits, aux)`` in train mode upstream; omnizoo's returns logits in
  both modes (the aux head is kept and loaded; set ``model.aux_logits = True`` to get it back).
* Checkpoint key formats: the files of the torchvision wrappers (and xception's) use the key
  names from before upstream's renames (``fc.*``, ``classifier.6.*``, DenseNet's legacy
  ``norm.1``); the built models rename them (``last_linear.*``, ``_features.*``). Both
  spellings load.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import threading
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from ..data.config import DataConfig
from ..errors import CheckpointError, ConfigurationError, UnsupportedError
from ..registry.card import ModelCard, WeightsFile
from ..weights.hashing import parse_hash_prefix
from .base import CreateRequest, LoadReport, SourceAdapter

__all__ = ["TAG_SPELLING", "CadeneSource", "settings_key_for_tag", "tag_for_settings_key"]

#: pretrained_settings key -> omnizoo tag (the name grammar has no ``+``).
TAG_SPELLING: dict[str, str] = {
    "imagenet": "imagenet",
    "imagenet+background": "imagenet_background",
    "imagenet+5k": "imagenet_5k",
}

#: Bumped when this module changes what its cards contain.
CARDS_VERSION = 2
ORIGIN = "https://github.com/Cadene/pretrained-models.pytorch"
# torch.hub's HASH_REGEX: the first "-<hex>." in the file name is a sha256 prefix.
# Same file names (hence same verified bytes) re-hosted by timm (timm/models/senet.py and
# xception.py, `legacy_*` tags); tried after the original URL.
_TIMM_CADENE_RELEASE = (
    "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"
)
_REHOSTED = {
    "se_resnet50-ce0d4300.pth",
    "se_resnet101-7e38fcc6.pth",
    "se_resnet152-d17c99b7.pth",
    "xception-43020ad28.pth",
}

# The torchvision-backed wrappers: built model key prefix <- torchvision checkpoint key prefix.
_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_DENSENETS = ("densenet121", "densenet169", "densenet201", "densenet161")
_VGGS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")
_SQUEEZENETS = ("squeezenet1_0", "squeezenet1_1")
_TV_WRAPPERS = frozenset((*_RESNETS, *_DENSENETS, *_VGGS, *_SQUEEZENETS, "alexnet", "inceptionv3"))


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
    if arch in _SQUEEZENETS:
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


def _import_pretrainedmodels() -> Any:
    from ..errors import DependencyError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pretrainedmodels
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise DependencyError(
            f"the cadene source needs pretrainedmodels (and six): pip install pretrainedmodels six "
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


def _build_upstream(pm: Any, arch: str, num_classes: int) -> Any:
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


def _fix_quirks(arch: str, model: Any) -> None:
    if arch in _SQUEEZENETS:
        model.logits = types.MethodType(_squeezenet_logits, model)
    if arch == "inceptionv3":
        model.aux_logits = False


def _data_config(entry: Mapping[str, Any]) -> DataConfig:
    """``pretrainedmodels.utils.TransformImage(entry)`` (eval: scale 0.875, centre crop)."""
    size = tuple(int(v) for v in entry["input_size"])
    scale = 0.875  # TransformImage's default
    bgr = entry["input_space"] == "BGR"
    to255 = max(entry["input_range"]) == 255
    return DataConfig(
        input_size=(size[0], size[1], size[2]),
        # transforms.Resize's default (PIL bilinear; antialias on tensors)
        interpolation="bilinear",
        # TransformImage: Resize(floor(max(input_size) / scale)) keeps the aspect ratio
        resize_size=math.floor(max(size) / scale),
        crop_pct=scale,
        crop_mode="center",
        # ToSpaceBGR then ToRange255 then Normalize(mean, std): the values are already given
        # in the BGR order and the 0-255 range where those apply
        mean=tuple(float(v) for v in entry["mean"]),
        std=tuple(float(v) for v in entry["std"]),
        color_order="BGR" if bgr else "RGB",
        value_range=(0.0, 255.0) if to255 else (0.0, 1.0),
    )


def _meta_stats(pm: Any, arch: str, num_classes: int) -> tuple[int | None, str | None, str | None]:
    """(num_params, first conv, classifier) from a meta-device build (no memory, no init cost)."""
    try:
        import torch

        with torch.device("meta"):
            model = _build_upstream(pm, arch, num_classes)
    except Exception:  # pragma: no cover - informational only
        return None, None, None
    first_conv = None
    for key, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            first_conv = key
            break
    head = "last_linear" if hasattr(model, "last_linear") else "last_conv"
    return sum(p.numel() for p in model.parameters()), first_conv, head


class CadeneSource(SourceAdapter):
    """The ``cadene:`` source (``pretrainedmodels``)."""

    name = "cadene"
    distribution = "pretrainedmodels"

    def index_key(self) -> str:
        # + this module's own card version, so a change here invalidates cached indexes too
        return f"{super().index_key()}-cards{CARDS_VERSION}"

    # ------------------------------------------------------------------ cards
    def build_cards(self) -> list[ModelCard]:
        pm = _import_pretrainedmodels()
        settings = pm.pretrained_settings
        cards: list[ModelCard] = []
        for arch in pm.model_names:
            entries: Mapping[str, Mapping[str, Any]] = settings[arch]
            default_key = self._default_key(pm, arch, entries)
            # a file's head size: the largest num_classes any entry gives that URL
            file_rows: dict[str, int] = {}
            for e in entries.values():
                file_rows[e["url"]] = max(file_rows.get(e["url"], 0), int(e["num_classes"]))
            stats: dict[int, tuple[int | None, str | None, str | None]] = {}
            for key, entry in entries.items():
                nc = int(entry["num_classes"])
                if nc not in stats:
                    stats[nc] = _meta_stats(pm, arch, nc)
                num_params, first_conv, head = stats[nc]
                cards.append(
                    self._card(
                        arch,
                        key,
                        entry,
                        key == default_key,
                        file_rows[entry["url"]],
                        num_params,
                        first_conv,
                        head,
                    )
                )
        return cards

    @staticmethod
    def _default_key(pm: Any, arch: str, entries: Mapping[str, Any]) -> str:
        """The builder's own default (``pretrained='imagenet+5k'`` for dpn68b, ...)."""
        try:
            default = inspect.signature(pm.__dict__[arch]).parameters["pretrained"].default
        except (KeyError, TypeError, ValueError):  # pragma: no cover - defensive
            default = None
        if default in entries:
            return str(default)
        return "imagenet" if "imagenet" in entries else next(iter(entries))

    def _card(
        self,
        arch: str,
        key: str,
        entry: Mapping[str, Any],
        is_default: bool,
        rows_in_file: int,
        num_params: int | None,
        first_conv: str | None,
        head: str | None,
    ) -> ModelCard:
        url = str(entry["url"])
        filename = url.rsplit("/", 1)[-1]
        urls = [url]
        if filename in _REHOSTED:
            urls.append(_TIMM_CADENE_RELEASE + filename)
        nc = int(entry["num_classes"])
        background = nc == 1001
        notes = [
            "pretrainedmodels never checks the sha256 prefix in the file name; omnizoo does",
        ]
        if url.startswith("http://data.lip6.fr/"):
            notes.append(
                "hosted on plain-http data.lip6.fr (repeated outages, Cadene issues #95/#152/#161);"
                " the file-name sha256 prefix is what makes any copy trustworthy"
                + ("; a timm GitHub re-host is the fallback URL" if len(urls) > 1 else "")
            )
        if background:
            notes.append("1001-way head: index 0 is a background class (label_offset=1)")
        elif rows_in_file == nc + 1:
            notes.append(
                "the file has a 1001-way head (background first); rows [1:] are kept, as upstream"
                " does for pretrained='imagenet'"
            )
        if key == "imagenet+5k":
            notes.append("pretrained on ImageNet-5k, fine-tuned on ImageNet-1k (1000 classes)")
        if entry["input_space"] == "BGR":
            notes.append("Caffe-style input: BGR channel order, 0-255 range, mean subtraction")
        if arch in _SQUEEZENETS:
            notes.append("output flattened to [N, 1000] (upstream returns [N, 1000, 1, 1])")
        if arch == "inceptionv3":
            notes.append(
                "returns logits in train mode too (aux head loaded but off; model.aux_logits=True"
                " restores (logits, aux))"
            )
        return ModelCard(
            source=self.name,
            arch=arch,
            tag=tag_for_settings_key(key),
            task="classification",
            weights=WeightsFile(
                urls=tuple(urls),
                filename=filename,
                hash_prefix=parse_hash_prefix(filename),
                format="pickle",
            ),
            is_default=is_default,
            num_classes=nc,
            label_set="imagenet-1k",
            label_offset=1 if background else 0,
            data=_data_config(entry),
            output="logits",
            num_params=num_params,
            origin=ORIGIN,
            first_conv=first_conv,
            classifier=(head,) if head else (),
            notes=tuple(notes),
            extra={
                "settings_key": key,
                "rows_in_file": rows_in_file,
                "input_space": entry["input_space"],
                "input_range": list(entry["input_range"]),
            },
        )

    # ------------------------------------------------------------------ building
    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        from . import _cadene_build

        return _cadene_build.create(self, card, request)


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


def _unsupported(what: str) -> UnsupportedError:
    return UnsupportedError(
        f"{what} is not supported for cadene models; use model.features(x) for the last "
        "feature map, or the timm/torchvision version of the architecture for features_only"
    )
