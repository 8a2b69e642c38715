"""Hash prefixes, sha256 normalisation, content sniffing and the streaming hasher."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from omnizoo.errors import HashMismatchError, NotAWeightsFileError
from omnizoo.weights.hashing import (
    HashingWriter,
    check_digest,
    detect_format,
    hash_file,
    normalize_sha256,
    parse_hash_prefix,
    reject_if_not_weights,
    sniff,
)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("resnet18-f37072fd.pth", "f37072fd"),
        ("https://download.pytorch.org/models/resnet18-f37072fd.pth", "f37072fd"),
        # torchvision's 10-hex and Cadene's 9-hex prefixes
        ("shufflenetv2_x1-5666bf0f80.pth", "5666bf0f80"),
        ("mnasnet0.5_top1_67.823-3ffadce67e.pth", "3ffadce67e"),
        ("http://data.lip6.fr/cadene/pretrainedmodels/densenet121-fbdb23505.pth", "fbdb23505"),
        ("efficientnet-b0-355c32eb.pth", "355c32eb"),
        ("adv-efficientnet-b8-22a8fe65.pth", "22a8fe65"),
        ("https://x.org/a/inception_v3_google-1a9a5a14.pth?download=1", "1a9a5a14"),
        # no prefix: underscore instead of dash (torchvision quantized), none at all, or
        # a hex-looking directory name that is not part of the basename
        ("resnet18_fbgemm_16fa66dd.pth", None),
        ("https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors", None),
        ("https://x.org/models-abcdef12.d/model.pth", None),
        ("model-.pth", None),
        ("Model-ABCDEF12.pth", None),  # upper case is not torch.hub's convention
        # words that happen to be hex are not prefixes: real ones have 8+ digits
        ("https://dl.fbaipublicfiles.com/ijepa/IN22K-vit.g.16-600e.pth.tar", None),
    ],
)
def test_parse_hash_prefix(name: str, prefix: str | None) -> None:
    assert parse_hash_prefix(name) == prefix


def test_normalize_sha256() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert normalize_sha256(digest.upper()) == digest
    assert normalize_sha256("sha256:" + digest) == digest
    with pytest.raises(ValueError, match="64 hex"):
        normalize_sha256(digest[:10])


@pytest.mark.parametrize(
    "head",
    [
        b"<!DOCTYPE html><html><body>login</body></html>",
        b"\n\n  <html lang='en'>",
        b"\xef\xbb\xbf<!doctype HTML>",
        b"<head><title>404</title>",
    ],
)
def test_sniff_html(head: bytes) -> None:
    assert sniff(head) == "an HTML page"
    with pytest.raises(NotAWeightsFileError, match=r"http://h/x\.pth returned an HTML page"):
        reject_if_not_weights(head, "http://h/x.pth")


def test_sniff_lfs_pointer() -> None:
    head = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n"
    assert sniff(head) == "a Git-LFS pointer file"
    with pytest.raises(NotAWeightsFileError, match="Git-LFS pointer"):
        reject_if_not_weights(head, "http://h/x.pth")


@pytest.mark.parametrize(
    "head",
    [b"PK\x03\x04archive", b"\x80\x02\x8a\nlegacy", b'{"model_sha": 1}', b"\x08\x07onnx", b""],
)
def test_sniff_accepts_weights_and_json(head: bytes) -> None:
    assert sniff(head) is None
    reject_if_not_weights(head, "http://h/x")  # no error


def test_detect_format() -> None:
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    assert detect_format(len(header).to_bytes(8, "little") + header) == "safetensors"
    assert detect_format(b"PK\x03\x04....archive/data.pkl") == "pickle"
    assert detect_format(b"PK\x03\x04....w.npy") == "npz"
    assert detect_format(b"\x80\x02\x8a\x0a") == "pickle"
    assert detect_format(b"\x08\x07\x12\x07pytorch") == "onnx"
    assert detect_format(b"hello") is None


def test_check_digest_messages() -> None:
    good = hashlib.sha256(b"abc").hexdigest()
    check_digest(good, 3, url="u", sha256=good, hash_prefix=None, expected_size=3)
    check_digest(good, 3, url="u", sha256=None, hash_prefix=good[:8])
    check_digest(good, 3, url="u", sha256=None, hash_prefix=None)  # nothing to check
    with pytest.raises(HashMismatchError, match=f"u: sha256 mismatch: expected {'0' * 64}"):
        check_digest(good, 3, url="u", sha256="0" * 64, hash_prefix=None)
    with pytest.raises(HashMismatchError, match="promises a digest starting with 'deadbeef'"):
        check_digest(good, 3, url="u", sha256=None, hash_prefix="deadbeef")
    with pytest.raises(
        HashMismatchError, match=rf"size mismatch: expected 4 bytes \(sha256 {good}\), got 3 \("
    ):
        check_digest(good, 3, url="u", sha256=good, hash_prefix=None, expected_size=4)


@pytest.mark.parametrize("pipelined", [True, False])
def test_hashing_writer_matches_hashlib(tmp_path: Path, pipelined: bool) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "out.part"
    with HashingWriter(path, pipelined=pipelined) as w:
        for i in range(0, len(data), 100_000):
            w.write([data[i : i + 50_000], data[i + 50_000 : i + 100_000]])
        assert w.hexdigest() == hashlib.sha256(data).hexdigest()
        assert w.size == len(data)
        assert w.head == data[:1024]
        w.reset()
        w.write([b"fresh"])
        assert w.hexdigest() == hashlib.sha256(b"fresh").hexdigest()
    assert path.read_bytes() == b"fresh"
    assert hash_file(path) == (hashlib.sha256(b"fresh").hexdigest(), 5)


def test_hashing_writer_reports_worker_errors(tmp_path: Path) -> None:
    w = HashingWriter(tmp_path / "x.part", pipelined=True)
    os.close(w._fd)  # make the worker's write fail
    w.write([b"a" * 10])
    with pytest.raises(OSError):
        w.hexdigest()
    w._fd = -1
    w.close()
    inline = HashingWriter(tmp_path / "y.part", pipelined=False)
    os.close(inline._fd)
    with pytest.raises(OSError):
        inline.write([b"a" * 10])
    inline._fd = -1
    inline.close()


def test_hashing_thread_whenever_two_cpus_are_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnizoo.weights import hashing

    monkeypatch.setattr(hashing, "_usable_cpus", lambda: 1)
    assert not hashing.spare_cpu()
    monkeypatch.setattr(hashing, "_usable_cpus", lambda: 2)
    # a busy machine still gets the thread (it was measured faster there too)
    monkeypatch.setattr(hashing.os, "getloadavg", lambda: (9.5, 9.0, 8.0))
    assert hashing.spare_cpu()
