"""Files already in the torch.hub and Hugging Face caches are verified (against a hash known in
advance, or the one the Hub's HEAD announces) and adopted without downloading them again; files
that do not verify are never adopted (tests/test_trust_ecosystem.py tries the attacks).
``omnizoo cache add``; ``HF_TOKEN`` to the Hub origin only; ``HF_HUB_OFFLINE``.

The loopback server counts every request (HEADs included).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest

from hubfiles import COMMIT, HF_URL, NAME, REAL, REPO, SHA_REAL, HubRepo, blobs, env, refs
from omnizoo import download_weights
from omnizoo.cli.main import main
from omnizoo.errors import HashMismatchError, OfflineError, UnpinnedError
from omnizoo.registry.downloads import add_to_cache
from weightserver import WeightServer

DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()
FILE = f"tiny-{SHA[:8]}.pth"  # a torch.hub name: the file name carries a hash prefix


def torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes) -> Path:
    """A torch.hub cache (TORCH_HOME) holding ``name``."""
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    path = checkpoints / name
    path.write_bytes(data)
    env(monkeypatch, TORCH_HOME=str(tmp_path / "torch"))
    return path


def hf_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, *, blob: str | None = None
) -> Path:
    """A Hugging Face cache (HF_HOME) holding the REPO's model.safetensors at COMMIT, in
    huggingface_hub's layout: refs/main -> commit, snapshots/<commit>/file -> ../../blobs/<etag>."""
    root = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    name = blob or hashlib.sha256(data).hexdigest()
    (root / "blobs" / name).write_bytes(data)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("..", "..", "blobs", name))
    env(monkeypatch, HF_HOME=str(tmp_path / "hf"))
    return root / "blobs" / name


# -- torch.hub ---------------------------------------------------------------------------
def test_torch_hub_file_is_adopted_without_a_request(
    hub_home: Path, weight_server: WeightServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weight_server.add(f"/models/{FILE}", DATA)
    original = torch_hub(tmp_path, monkeypatch, FILE, DATA)
    mode = original.stat().st_mode
    path = download_weights(url)
    assert path.read_bytes() == DATA and path.name == SHA
    assert weight_server.stats()[f"/models/{FILE}"] == {
        "requests": 0,
        "heads": 0,
        "bodies": 0,
        "range_requests": 0,
        "bytes_sent": 0,
    }
    (ref,) = refs(hub_home)
    assert ref["verification"] == "prefix" and ref["fetched_from"] == original.as_uri()
    # copied, not linked: the other cache's file is untouched
    assert original.stat().st_mode == mode and original.stat().st_ino != path.stat().st_ino
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0


def test_torch_hub_file_that_does_not_verify_is_not_adopted(
    hub_home: Path,
    weight_server: WeightServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = weight_server.add(f"/models/{FILE}", DATA)
    torch_hub(tmp_path, monkeypatch, FILE, os.urandom(len(DATA)))  # other bytes, same name
    with caplog.at_level(logging.WARNING, logger="omnizoo.weights"):
        path = download_weights(url)
    assert path.read_bytes() == DATA
    assert weight_server.route(url).bodies == 1  # downloaded instead
    assert "not adopting" in caplog.text and "sha256 mismatch" in caplog.text
    assert blobs(hub_home) == [SHA]


def test_torch_hub_file_without_a_known_hash_is_never_trusted(
    hub_home: Path, weight_server: WeightServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weight_server.add("/models/nohash.pth", DATA)  # no prefix, no sha256: nothing to check
    torch_hub(tmp_path, monkeypatch, "nohash.pth", os.urandom(100))
    assert download_weights(url).read_bytes() == DATA
    assert weight_server.route(url).bodies == 1
    # with the sha256 given, the same kind of file is adopted
    url2 = weight_server.add("/models/nohash2.pth", DATA)
    torch_hub_dir = tmp_path / "torch" / "hub" / "checkpoints"
    (torch_hub_dir / "nohash2.pth").write_bytes(DATA)
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "second"))
    assert download_weights(url2, sha256=SHA).read_bytes() == DATA
    assert weight_server.route(url2).requests == 0


def test_adoption_can_be_turned_off(
    hub_home: Path, weight_server: WeightServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = weight_server.add(f"/models/{FILE}", DATA)
    torch_hub(tmp_path, monkeypatch, FILE, DATA)
    env(monkeypatch, OMNIZOO_ECOSYSTEM_CACHES="0")
    download_weights(url)
    assert weight_server.route(url).bodies == 1


# -- Hugging Face --------------------------------------------------------------------------
def test_hugging_face_cache_file_is_adopted_after_asking_the_hub(
    hub: HubRepo, hub_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The origin's HEAD (not the blob's name) says what the bytes must be; no body is sent."""
    hf_cache(tmp_path, monkeypatch, REAL)
    path = download_weights(NAME)
    assert path.read_bytes() == REAL
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 0
    by_url = {r["url"]: r for r in refs(hub_home)}
    assert by_url[HF_URL]["verification"] == "origin" and by_url[HF_URL]["revision"] == COMMIT
    assert NAME in by_url[HF_URL]["names"]


def test_hugging_face_blob_that_lies_about_its_name_is_not_adopted(
    hub: HubRepo, hub_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf_cache(tmp_path, monkeypatch, os.urandom(len(REAL)), blob=SHA_REAL)  # damaged blob
    path = download_weights(NAME)
    assert path.read_bytes() == REAL  # from the origin, checked against its sha256
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 1


def test_hf_hub_offline(
    hub: HubRepo, hub_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env(monkeypatch, HF_HUB_OFFLINE="1")
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        download_weights(NAME)
    assert hub.heads("model.safetensors") == 0 and hub.bodies(REAL) == 0
    hf_cache(tmp_path, monkeypatch, REAL)  # the Hugging Face cache is still used, unverified
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 0
    assert [r["verification"] for r in refs(hub_home)] == ["unverified"]


def test_hf_token_goes_to_the_origin_only(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = HubRepo(weight_server, REPO)
    origin.add("model.safetensors", REAL, require_auth="Bearer hf_secret")
    mirror = HubRepo(weight_server, REPO, prefix="/mirror")
    mirror.add("model.safetensors", REAL)
    env(monkeypatch, OMNIZOO_HF_ORIGIN=origin.base)
    with pytest.raises(Exception, match="401"):  # a gated repo without the token
        download_weights(NAME)
    env(monkeypatch, HF_TOKEN="hf_secret", HF_ENDPOINT=mirror.base)
    assert download_weights(NAME).read_bytes() == REAL
    heads = weight_server.route(origin.path("model.safetensors")).auth_seen
    assert heads[-1] == "Bearer hf_secret"  # the HEAD to the origin carried it
    served = weight_server.route(mirror.path("model.safetensors", COMMIT))
    assert served.requests == 1 and served.auth_seen == [None]  # the mirror never saw it


# -- cache add -----------------------------------------------------------------------------
def test_cache_add_verifies_like_a_download(
    hub_home: Path, weight_server: WeightServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = weight_server.add(f"/models/{FILE}", DATA)
    copy = tmp_path / "copy.pth"
    copy.write_bytes(os.urandom(len(DATA)))
    with pytest.raises(HashMismatchError):
        add_to_cache(copy, url)
    assert blobs(hub_home) == []
    copy.write_bytes(DATA)
    assert main(["cache", "add", str(copy), "--as", url]) == 0
    assert "prefix" in capsys.readouterr().out
    assert download_weights(url).read_bytes() == DATA
    assert weight_server.route(url).requests == 0
    # a file nothing pins is refused, unless its sha256 is given
    unpinned = weight_server.url("/models/nohash.bin")
    with pytest.raises(UnpinnedError, match="--sha256"):
        add_to_cache(copy, unpinned)
    assert add_to_cache(copy, unpinned, sha256=SHA).verification == "pinned"


def test_cache_add_finds_the_model_by_file_name(hub_home: Path, tmp_path: Path) -> None:
    from omnizoo import get_card

    card = get_card("torchvision:resnet18.IMAGENET1K_V1")
    assert card.weights is not None
    copy = tmp_path / card.weights.filename
    copy.write_bytes(os.urandom(1000))
    # found by name (resnet18-f37072fd.pth), then refused by the hash prefix
    with pytest.raises(HashMismatchError, match="f37072fd"):
        main_raise(["cache", "add", str(copy)])


def main_raise(argv: list[str]) -> None:
    """Run the CLI's command function directly, so the error itself can be checked."""
    from omnizoo.cli.main import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)


def test_where_the_ecosystem_caches_are() -> None:
    """torch's and huggingface_hub's own rules for their cache folders."""
    from omnizoo.settings import hf_hub_cache, torch_home

    home = Path("~").expanduser()
    assert torch_home({}) == home / ".cache" / "torch"
    assert torch_home({"XDG_CACHE_HOME": "/x"}) == Path("/x/torch")
    assert torch_home({"TORCH_HOME": "/t", "XDG_CACHE_HOME": "/x"}) == Path("/t")
    assert hf_hub_cache({}) == home / ".cache" / "huggingface" / "hub"
    assert hf_hub_cache({"HF_HOME": "/h"}) == Path("/h/hub")
    assert hf_hub_cache({"HF_HOME": "/h", "HUGGINGFACE_HUB_CACHE": "/old"}) == Path("/old")
    assert hf_hub_cache({"HF_HUB_CACHE": "/c", "HUGGINGFACE_HUB_CACHE": "/old"}) == Path("/c")
