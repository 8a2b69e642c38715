"""Writing a ``save_pretrained`` folder: ``model.safetensors`` then ``card.json``, each
written to a temporary file in the folder and renamed into place, so a reader (or a crash)
never sees half a file; the format is the one :mod:`omnizoo.saved.folder` reads back."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..values.card import ModelCard
from ..values.relabel import with_saved_file
from ..weights import fsafe
from .folder import CARD_FILE, FORMAT, FORMAT_VERSION, SAFETENSORS_CARD_KEY, WEIGHTS_FILE

__all__ = ["write_folder"]


def write_folder(
    target: Path,
    state: dict[str, Any],
    card: ModelCard,
    base: ModelCard,
    record: dict[str, Any],
    labels: list[str] | None,
    lineage: Mapping[str, Any] | None,
) -> None:
    """Write ``state`` (contiguous CPU tensors) and ``card`` (the saved model's, from
    ``registry.derive.saved_card``) into ``target`` (created if needed; other files in it are
    left alone). ``base`` is the registry card it was built from, ``record`` how to rebuild it
    (``create_model``'s arguments), ``labels`` its class names."""
    target.mkdir(parents=True, exist_ok=True)
    # the card inside the weights file cannot hold the file's own sha256; card.json does
    inside = with_saved_file(card, WEIGHTS_FILE, None, None)
    metadata = {
        "format": "pt",
        SAFETENSORS_CARD_KEY: json.dumps(inside.to_dict(), sort_keys=True),
        "omnizoo.base": base.name,
        "omnizoo.version": __version__,
    }
    digest, size = _write_weights(state, target / WEIGHTS_FILE, metadata)
    card = with_saved_file(card, WEIGHTS_FILE, digest, size)
    card_dict = card.to_dict()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "omnizoo_version": __version__,
        "source": base.source,
        "architecture": base.arch,
        "num_classes": card.num_classes,
        "labels": labels,
        "data_config": card.data.to_dict(),
        "card": card_dict,
        "base": base.to_dict(),
        "build": record,
        "weights": {"file": WEIGHTS_FILE, "sha256": digest, "size": size, "format": "safetensors"},
        "lineage": dict(lineage or {}),
    }
    fsafe.write_atomic(
        target / CARD_FILE, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")
    )


def _write_weights(state: dict[str, Any], path: Path, metadata: dict[str, str]) -> tuple[str, int]:
    from safetensors.torch import save_file

    from ..weights.hashing import hash_file

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        digest, size = hash_file(Path(tmp))
        _umask_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return digest, size


def _umask_mode(path: Path) -> None:
    """mkstemp makes 0600 files; saved models get the mode the umask gives (0644 usually)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
