"""The ONNX zoo's test data: each model's ``model_with_data`` tarball (sha256-verified, safely
extracted) and its ``test_data_set_*`` protobuf inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UnsupportedError
from ...settings import get_settings
from ...values.card import ModelCard, WeightsFile
from .manifest import model_urls

__all__ = ["download_test_data", "load_test_data"]


def download_test_data(card: ModelCard) -> Path:
    """Fetch a zoo model's ``model_with_data`` tarball (sha256-verified) and extract it safely
    (``download_test_data(get_card("onnx:resnet50-v1-7"))``).

    Returns the extracted directory (``<OMNIZOO_HOME>/onnx-test-data/<sha256>``), which holds the
    model and its ``test_data_set_*`` protobuf inputs/outputs (:func:`load_test_data`).
    """
    from ...weights.archive import safe_extract
    from ...weights.download import fetch_verified

    info = card.extra.get("test_data") if card.source == "onnx" else None
    if not info or not info.get("path"):
        raise UnsupportedError(f"{card.name} has no ONNX zoo test-data archive")
    dest = get_settings().home / "onnx-test-data" / str(info["sha256"])
    if dest.is_dir():
        return dest
    path = info["path"]
    tarball = fetch_verified(
        WeightsFile(
            urls=model_urls(path),
            filename=path.rsplit("/", 1)[-1],
            sha256=info.get("sha256"),
            size=info.get("size"),
            format="pickle",  # not a weights format; only the bytes matter here
        ),
        name=f"{card.name} test data",
    ).path
    try:
        return safe_extract(tarball, dest)
    except FileExistsError:  # another process finished first
        return dest


def load_test_data(directory: str | Path) -> list[tuple[list[Any], list[Any]]]:
    """The ``test_data_set_*`` folders under ``directory`` as ``(inputs, outputs)`` numpy lists."""
    import onnx
    from onnx import numpy_helper

    sets = []
    for folder in sorted(Path(directory).rglob("test_data_set_*")):
        if not folder.is_dir():
            continue
        pair: tuple[list[Any], list[Any]] = ([], [])
        for kind, bucket in (("input", pair[0]), ("output", pair[1])):
            for pb in sorted(folder.glob(f"{kind}_*.pb")):
                tensor = onnx.TensorProto()
                tensor.ParseFromString(pb.read_bytes())
                bucket.append(numpy_helper.to_array(tensor).copy())
        sets.append(pair)
    return sets
