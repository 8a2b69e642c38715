"""safe_extract: crafted malicious archives are refused before anything is written."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from omnizoo.errors import IntegrityError
from omnizoo.weights.archive import UnsafeArchiveError, safe_extract


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def test_good_archive_extracts(tmp_path: Path) -> None:
    d = tarfile.TarInfo("model/sub")
    d.type = tarfile.DIRTYPE
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            (d, None),
            (_file("model/model.onnx"), b"onnx"),
            (_file("model/test_data_set_0/input_0.pb"), b"pb"),
            (_link("model/alias.onnx", "model.onnx", tarfile.SYMTYPE), None),
            (_link("model/hard.onnx", "model/model.onnx", tarfile.LNKTYPE), None),
        ],
    )
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "model" / "model.onnx").read_bytes() == b"onnx"
    assert (dest / "model" / "test_data_set_0" / "input_0.pb").read_bytes() == b"pb"
    assert (dest / "model" / "alias.onnx").read_bytes() == b"onnx"
    assert (dest / "model" / "hard.onnx").read_bytes() == b"onnx"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".extracting")]
    with pytest.raises(FileExistsError):
        safe_extract(archive, dest)


@pytest.mark.parametrize(
    ("member", "data", "why"),
    [
        (_file("../evil.txt"), b"x", "'..'"),
        (_file("model/../../evil.txt"), b"x", "'..'"),
        (_file("/tmp/omnizoo-evil-abs.txt"), b"x", "absolute"),
        (_link("model/passwd", "/etc/passwd", tarfile.SYMTYPE), None, "absolute"),
        (_link("model/up", "../../outside", tarfile.SYMTYPE), None, "outside"),
        (_link("model/deep/up", "../../../x", tarfile.SYMTYPE), None, "outside"),
        (_link("model/hard", "../outside.txt", tarfile.LNKTYPE), None, "outside"),
        (_link("model/hardabs", "/etc/shadow", tarfile.LNKTYPE), None, "absolute"),
        (_special("model/null", tarfile.CHRTYPE), None, "device"),
        (_special("model/disk", tarfile.BLKTYPE), None, "device"),
        (_special("model/fifo", tarfile.FIFOTYPE), None, "FIFO"),
    ],
)
def test_malicious_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo, data: bytes | None, why: str
) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [(_file("model/ok.txt"), b"fine"), (member, data)])
    dest = tmp_path / "sandbox" / "out"
    with pytest.raises(UnsafeArchiveError, match=why) as info:
        safe_extract(archive, dest)
    assert isinstance(info.value, IntegrityError)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sandbox" / "evil.txt").exists()
    assert not Path("/tmp/omnizoo-evil-abs.txt").exists()
    leftovers = list((tmp_path / "sandbox").iterdir()) if (tmp_path / "sandbox").exists() else []
    assert leftovers == []


def test_symlink_then_write_through_it_is_refused(tmp_path: Path) -> None:
    """The classic two-step: a symlink to a directory outside, then a file 'inside' it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = _tar(
        tmp_path / "two.tar.gz",
        [
            (_link("model/link", str(outside), tarfile.SYMTYPE), None),
            (_file("model/link/pwned.txt"), b"x"),
        ],
    )
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert list(outside.iterdir()) == []


def test_not_an_archive(tmp_path: Path) -> None:
    p = tmp_path / "x.tar.gz"
    p.write_bytes(os.urandom(64))
    with pytest.raises(IntegrityError):
        safe_extract(p, tmp_path / "out")
