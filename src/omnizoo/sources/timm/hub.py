"""Where a timm model's weights come from when the user says so, the timm way:

* ``hf-hub:org/repo[@revision]`` names: the repo's ``config.json`` (architecture, model args,
  pretrained cfg) and its weights file, both through the verified cache;
* ``local-dir:/path`` names: ``config.json`` and the checkpoint in that folder (read safely);
* ``pretrained_cfg=`` / ``pretrained_cfg_overlay=`` with ``file``, ``state_dict``, ``url``,
  ``hf_hub_id``/``hf_hub_filename``: the source timm's ``_resolve_pretrained_source`` would pick,
  in the same order (state dict, file, Hugging Face, URL), never a silent fallback to the
  published weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...errors import (
    CheckpointError,
    ConfigurationError,
    DependencyError,
    NoPretrainedWeightsError,
)
from ...loading.request import CreateRequest
from ...values.card import ModelCard, WeightsFile, format_of_name
from .cards import HF_FILENAME, card_from_cfg, hf_url

__all__ = ["external_card", "local_checkpoint", "resolve_weights_source"]

#: What timm's ``load_state_dict_from_path`` looks for in a folder, in order.
PREFERRED_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
EXT_PRIORITY = (".safetensors", ".pth", ".pth.tar", ".bin")


def local_checkpoint(folder: Path) -> Path:
    """The checkpoint file timm would load from ``folder``."""
    for name in PREFERRED_FILES:
        if (folder / name).is_file():
            return folder / name
    for ext in EXT_PRIORITY:
        files = sorted(p for p in folder.glob(f"*{ext}") if p.is_file())
        if files:
            return files[0]
    raise CheckpointError(
        f"no checkpoint in {folder}: expected one of {', '.join(PREFERRED_FILES)} or a "
        f"{'/'.join(EXT_PRIORITY)} file"
    )


#: The oldest timm whose config reader (``timm.models._hub._parse_model_cfg``) omnizoo uses for
#: ``hf-hub:``/``local-dir:`` names (pyproject's timm extra allows older: 1.0.9 lacks it).
HUB_NAMES_TIMM = "1.0.20"


def _config_parser(name: str) -> Any:
    """timm's reader of a ``config.json``; a DependencyError naming the timm that has it."""
    import timm

    try:
        from timm.models._hub import _parse_model_cfg
    except ImportError:
        raise DependencyError(
            f"{name}: hf-hub:/local-dir: names need timm >= {HUB_NAMES_TIMM} (its config.json "
            f'reader); this is timm {timm.__version__}: pip install -U "timm>={HUB_NAMES_TIMM}"'
        ) from None
    return _parse_model_cfg


def _parse_config(cfg: dict[str, Any], extra_fields: dict[str, Any], where: str) -> Any:
    _parse_model_cfg = _config_parser(where)
    try:
        return _parse_model_cfg(cfg, extra_fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where} is not a timm model config ({exc!r})") from exc


def _read_json(path: Path, where: str) -> dict[str, Any]:
    from ...schema import MAX_METADATA_BYTES, parse_json
    from ...weights.fsafe import read_input

    try:  # the one safe opener: a regular file, size-capped (a FIFO never blocks)
        data = parse_json(read_input(path, MAX_METADATA_BYTES), str(path))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {where}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where} holds a {type(data).__name__}, not a JSON object")
    return data


def external_card(scheme: str, identifier: str) -> ModelCard:
    """The card of a ``hf-hub:`` or ``local-dir:`` model, from its ``config.json``."""
    if scheme in ("local-dir", "hf-hub"):
        _config_parser(f"{scheme}:{identifier}")  # before anything is read or downloaded
    if scheme == "local-dir":
        folder = Path(identifier).expanduser()
        config = folder / "config.json"
        if not config.is_file():
            raise ConfigurationError(
                f"local-dir:{identifier}: no config.json in {folder} (timm's "
                "save_for_hf/push_to_hf_hub layout: config.json + model.safetensors)"
            )
        cfg, arch, model_args = _parse_config(
            _read_json(config, str(config)),
            {"file": str(folder), "source": "local-dir"},
            str(config),
        )
        weights = None
    elif scheme == "hf-hub":
        from ...weights.download import fetch_verified

        repo, _, revision = identifier.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ConfigurationError(
                f"hf-hub:{identifier}: expected hf-hub:org/repo[@revision], "
                "e.g. hf-hub:timm/resnet18.a1_in1k"
            )
        revision = revision or "main"
        config = fetch_verified(hf_url(repo, "config.json", revision)).path
        cfg, arch, model_args = _parse_config(
            _read_json(config, f"{repo}/config.json"),
            {"hf_hub_id": identifier, "source": "hf-hub"},
            f"hf-hub:{identifier} config.json",
        )
        filename = cfg.get("hf_hub_filename") or HF_FILENAME
        weights = WeightsFile(
            urls=(hf_url(repo, filename, revision),),
            filename=filename,
            format=format_of_name(filename),
            hf_hub_id=repo,
        )
    else:
        raise ConfigurationError(f"unknown timm model source {scheme!r}; use hf-hub: or local-dir:")
    return card_from_cfg(
        "timm",
        f"{scheme}:{identifier}",
        None,
        cfg,
        "",
        True,
        weights=weights,
        extra={
            "architecture": arch,
            "model_args": dict(model_args or {}),
            "pretrained_cfg": cfg,
            "scheme": scheme,
        },
    )


def _source_of(cfg: dict[str, Any]) -> tuple[str, Any]:
    """timm's ``_resolve_pretrained_source``: (kind, location), kind one of state_dict, file,
    hf-hub, local-dir, url or ''."""
    source = cfg.get("source") or ""
    if source == "hf-hub" and cfg.get("hf_hub_id"):
        return "hf-hub", cfg["hf_hub_id"]
    if source == "local-dir":
        return "local-dir", cfg.get("file")
    if cfg.get("state_dict"):
        return "state_dict", cfg["state_dict"]
    if cfg.get("file"):
        return "file", cfg["file"]
    if cfg.get("hf_hub_id"):
        return "hf-hub", cfg["hf_hub_id"]
    if cfg.get("url"):
        return "url", cfg["url"]
    return "", None


def resolve_weights_source(
    card: ModelCard, request: CreateRequest
) -> tuple[ModelCard, CreateRequest]:
    """Apply ``pretrained_cfg``/``pretrained_cfg_overlay`` and ``local-dir:`` to what
    ``pretrained=True`` loads. A local file or state dict is the user's own (read safely, never
    unpickled); another URL or Hub file is downloaded through the verified cache."""
    kwargs = request.kwargs
    scheme = card.extra.get("scheme")
    explicit = "pretrained_cfg" in kwargs or "pretrained_cfg_overlay" in kwargs
    if not request.pretrained or request.weights_path is not None:
        return card, request
    if scheme == "local-dir" and not explicit:
        folder = Path(str(card.extra["pretrained_cfg"].get("file")))
        path = local_checkpoint(folder)
        return card, dataclasses.replace(request, weights_path=path, user_checkpoint=True)
    if not explicit:
        return card, request
    from timm.models import resolve_pretrained_cfg

    from .build import timm_name

    arch, _, tag = timm_name(card).partition(".")
    given = kwargs.get("pretrained_cfg")
    if given is None:
        given = card.extra.get("pretrained_cfg") or tag or None
    cfg = resolve_pretrained_cfg(
        arch, pretrained_cfg=given, pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")
    ).to_dict()
    kind, where = _source_of(cfg)
    data_card = _with_data_config(card, cfg)
    if kind == "state_dict":
        if not isinstance(where, dict):
            raise ConfigurationError("pretrained_cfg['state_dict'] must be a dict of tensors")
        return data_card, dataclasses.replace(request, state_dict=where, user_checkpoint=True)
    if kind in ("file", "local-dir"):
        path = Path(str(where)).expanduser()
        if path.is_dir():
            path = local_checkpoint(path)
        return data_card, dataclasses.replace(request, weights_path=path, user_checkpoint=True)
    weights: WeightsFile | None
    if kind == "hf-hub":
        hub = where[0] if isinstance(where, (list, tuple)) else str(where)
        repo, _, revision = hub.partition("@")
        filename = cfg.get("hf_hub_filename") or HF_FILENAME
        weights = WeightsFile(
            urls=(hf_url(repo, filename, revision or "main"),),
            filename=filename,
            format=format_of_name(filename),
            hf_hub_id=repo,
        )
    elif kind == "url":
        from .cards import weights_from_cfg

        weights = weights_from_cfg({"url": where})
    else:
        raise NoPretrainedWeightsError(
            f"{card.name}: the pretrained_cfg given names no weights (no state_dict, file, "
            "hf_hub_id or url); use pretrained=False for random init"
        )
    if card.weights is not None and weights is not None and weights.urls == card.weights.urls:
        return data_card, request
    return dataclasses.replace(data_card, weights=weights), request


def _with_data_config(card: ModelCard, cfg: dict[str, Any]) -> ModelCard:
    """The card with the preprocessing the given cfg declares; a cfg whose preprocessing
    DataConfig cannot express (13 input channels with a 3-value mean, as timm's multispectral
    tests give) keeps the card's and says so."""
    from ...values.data_config import data_config_from_timm

    try:
        return dataclasses.replace(card, data=data_config_from_timm(cfg))
    except ConfigurationError as exc:
        note = f"preprocessing of the given pretrained_cfg not recorded ({exc})"
        return dataclasses.replace(card, notes=(*card.notes, note))
