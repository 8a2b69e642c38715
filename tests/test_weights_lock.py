"""Weights lock files (``omnizoo lock``, OMNIZOO_LOCK, ``lock=``): a round trip through the
command line, an air-gapped mirror made safe by the lock, mismatches, unlisted names and URLs,
``--update``, and malformed lock files. Each refusal checks the error type and message and that
nothing was requested or cached."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import socket
from pathlib import Path

import pytest

from hubfiles import (
    COMMIT,
    HF_URL,
    LIE,
    NAME,
    PINNED_URL,
    REAL,
    REPO,
    SHA_LIE,
    SHA_REAL,
    HubRepo,
    assert_nothing_cached,
    env,
)
from omnizoo import download_weights
from omnizoo.cli.main import main
from omnizoo.errors import HashMismatchError, LockFileError, NotInLockError, UnpinnedError
from omnizoo.registry.registry import get_card
from omnizoo.values.card import WeightsFile
from omnizoo.weights.cache import Cache
from omnizoo.weights.download import fetch_verified
from omnizoo.weights.lockfile import LockEntry, WeightsLock
from versions import needs_timm_hub_names
from weightserver import Route, WeightServer

OTHER = random.Random(5).randbytes(20_000)
SHA_OTHER = hashlib.sha256(OTHER).hexdigest()


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    return f"http://127.0.0.1:{port}"


def hub_lock(path: Path, sha256: str = SHA_REAL, size: int = len(REAL)) -> Path:
    WeightsLock(
        (LockEntry((HF_URL, PINNED_URL), sha256, size, NAME, COMMIT, "safetensors", "origin"),)
    ).save(path)
    return path


def test_lock_round_trip_makes_an_air_gapped_mirror_safe(
    hub_home: Path,
    hub: HubRepo,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    lock = tmp_path / "omnizoo.lock"
    assert main(["lock", NAME, "-o", str(lock)]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}  sha256 {SHA_REAL}  {len(REAL)} bytes  origin at {COMMIT[:12]}" in out
    assert json.loads(lock.read_text()) == {
        "omnizoo_lock": 1,
        "files": [
            {
                "name": NAME,
                "urls": [HF_URL, PINNED_URL],
                "revision": COMMIT,
                "sha256": SHA_REAL,
                "size": len(REAL),
                "format": "safetensors",
                "source": "origin",
            }
        ],
    }
    # Another machine: an empty cache, no route to the origin, a mirror as HF_ENDPOINT.
    shutil.rmtree(hub_home / "weights")
    mirror = weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/model.safetensors", REAL)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"), OMNIZOO_HF_ORIGIN=dead_url())
    with pytest.raises(UnpinnedError, match="could not ask the origin"):
        download_weights(NAME)  # without the lock the mirror cannot be trusted
    env(monkeypatch, OMNIZOO_LOCK=str(lock))
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert fetched.path.read_bytes() == REAL
    assert (fetched.verification, fetched.revision) == ("pinned", COMMIT)
    assert weight_server.route(mirror).bodies == 1
    assert hub.heads("model.safetensors") == 1  # only `omnizoo lock` asked the origin


def test_lock_mismatch_names_both_digests(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lock = hub_lock(tmp_path / "omnizoo.lock")
    mirror = weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/model.safetensors", LIE)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"), OMNIZOO_LOCK=str(lock))
    with pytest.raises(HashMismatchError, match=f"expected {SHA_REAL}, got {SHA_LIE}") as ei:
        download_weights(NAME)
    assert str(ei.value).startswith(f"{mirror}: sha256 mismatch")
    assert_nothing_cached(hub_home)
    # A caller's sha256 that contradicts the lock is refused before any request.
    with pytest.raises(HashMismatchError, match=f"pins sha256 {SHA_REAL}, the request expects"):
        download_weights(NAME, sha256=SHA_LIE)
    assert weight_server.route(mirror).requests == 1


def test_cached_bytes_must_match_the_lock_too(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, tmp_path: Path
) -> None:
    download_weights(NAME)  # cached, verified against the origin (REAL)
    lock = hub_lock(tmp_path / "omnizoo.lock", sha256=SHA_LIE, size=len(LIE))
    with pytest.raises(HashMismatchError, match=f"expected {SHA_LIE}, got {SHA_REAL}"):
        download_weights(NAME, lock=lock)  # not served from the cache, then refused


def test_unlisted_names_and_urls_are_refused(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lock = hub_lock(tmp_path / "omnizoo.lock")
    env(monkeypatch, OMNIZOO_LOCK=str(lock))
    tv = "torchvision:resnet18.IMAGENET1K_V1"
    with pytest.raises(NotInLockError) as ei:
        download_weights(tv)
    assert str(ei.value) == (
        f"{tv} is not in the lock file {lock}, and a lock refuses what it does not list; add it "
        f"with `omnizoo lock {tv} --update -o {lock}` (or re-run `omnizoo lock` with every "
        "name), or unset OMNIZOO_LOCK"
    )
    url = weight_server.add("/m/other.bin", OTHER)
    with pytest.raises(NotInLockError, match=f"omnizoo lock {url} --update -o {lock}"):
        download_weights(url)
    assert weight_server.route(url).requests == 0
    # A URL the caller pins with its own sha256 is allowed (like --hash in pip).
    assert download_weights(url, sha256=SHA_OTHER).read_bytes() == OTHER
    # The name, but another file (a pretrained_cfg or card change): re-lock it.
    moved = WeightsFile(urls=(url,), filename="other.bin")
    with pytest.raises(NotInLockError, match=f"{NAME} is in the lock file .* re-lock it"):
        fetch_verified(moved, name=NAME)
    # create_model refuses before it downloads or builds anything.
    from omnizoo import create_model

    squeeze = get_card("torchvision:squeezenet1_0.IMAGENET1K_V1")
    with pytest.raises(NotInLockError, match=r"squeezenet1_0\.IMAGENET1K_V1 is not in the lock"):
        create_model(squeeze, pretrained=True, lock=lock)
    assert_nothing_cached_but_other(hub_home)


def assert_nothing_cached_but_other(home: Path) -> None:
    blobs = home / "weights" / "blobs" / "sha256"
    assert sorted(p.name for p in blobs.iterdir()) == [SHA_OTHER]


def test_lock_update_keeps_other_entries(
    hub_home: Path,
    hub: HubRepo,
    weight_server: WeightServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    lock = tmp_path / "omnizoo.lock"
    url = weight_server.add(f"/m/other-{SHA_OTHER[:8]}.pth", OTHER)
    assert main(["lock", url, "-o", str(lock)]) == 0
    assert main(["lock", NAME, "--update", "-o", str(lock)]) == 0
    files = json.loads(lock.read_text())["files"]
    assert [(f["name"], f["sha256"], f["source"]) for f in files] == [
        (NAME, SHA_REAL, "origin"),
        (None, SHA_OTHER, "prefix"),
    ]
    assert "wrote" in capsys.readouterr().out
    assert main(["lock", NAME, "-o", str(lock)]) == 0  # without --update: only these names
    assert [f["name"] for f in json.loads(lock.read_text())["files"]] == [NAME]


def test_lock_pins_an_unhashed_file_for_a_mirror(
    hub_home: Path,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """An air-gapped mirror of a file no one published a hash for: the lock, made once where
    the origin is reachable, is what lets the mirror be used."""
    origin = weight_server.add("/orig/plain.bin", OTHER)
    lock = tmp_path / "omnizoo.lock"
    assert main(["lock", origin, "-o", str(lock)]) == 0
    captured = capsys.readouterr()
    assert f"{origin}  sha256 {SHA_OTHER}  {len(OTHER)} bytes  unverified" in captured.out
    assert "no hash was published for it; pinned on first use" in captured.err
    shutil.rmtree(hub_home / "weights")
    weight_server.routes["/orig/plain.bin"] = Route(status=404)  # the origin is gone
    mirror = weight_server.add("/mirror/plain.bin", OTHER)
    mirrors = {weight_server.url("/orig/"): weight_server.url("/mirror/")}
    env(monkeypatch, OMNIZOO_MIRRORS=json.dumps(mirrors))
    with pytest.raises(UnpinnedError, match="were not used"):
        download_weights(origin)
    assert weight_server.route(mirror).requests == 0
    env(monkeypatch, OMNIZOO_LOCK=str(lock))
    assert download_weights(origin).read_bytes() == OTHER
    assert weight_server.route(mirror).bodies == 1
    # The same mirror serving other bytes is caught by the lock's sha256.
    shutil.rmtree(hub_home / "weights")
    weight_server.add("/mirror/plain.bin", LIE[: len(OTHER)])
    with pytest.raises(HashMismatchError, match=f"expected {SHA_OTHER}, got "):
        download_weights(origin)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the lock file {path}: No such file or directory"),
        ("{not json", "the lock file {path} is not readable JSON"),
        ('{"files": []}', "{path} is not an omnizoo lock file (version 1)"),
        ('{"omnizoo_lock": 1, "files": {}}', "{path}: 'files' must be a list"),
        (
            '{"omnizoo_lock": 1, "files": [{"urls": ["http://x/a"], "sha256": "abc", "size": 1}]}',
            "{path}: files[0]: 'sha256' must be 64 lower-case hex digits, got 'abc'",
        ),
        (
            '{"omnizoo_lock": 1, "files": [{"urls": [], "sha256": "' + "a" * 64 + '", "size": 1}]}',
            "{path}: files[0]: 'urls' must be a non-empty list of URLs",
        ),
        (
            '{"omnizoo_lock": 1, "files": [{"urls": ["http://x/a"], "sha256": "'
            + "a" * 64
            + '", "size": -1}]}',
            "{path}: files[0]: 'size' must be an integer >= 0, got -1",
        ),
    ],
    ids=["missing", "not-json", "not-a-lock", "files-not-list", "short-sha", "no-urls", "size"],
)
def test_malformed_lock_file_is_named(
    hub_home: Path,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "omnizoo.lock"
    if content is not None:
        path.write_text(content)
    url = weight_server.add("/m/other.bin", OTHER)
    with pytest.raises(LockFileError) as ei:
        download_weights(url, lock=path)
    assert message.format(path=path) in str(ei.value)
    env(monkeypatch, OMNIZOO_LOCK=str(path))  # the same through the environment
    with pytest.raises(LockFileError):
        download_weights(url)
    assert weight_server.route(url).requests == 0


@needs_timm_hub_names
def test_lock_of_an_hf_hub_model_lists_its_config_too(
    hub_home: Path,
    hub: HubRepo,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``hf-hub:`` models fetch config.json (kept in git: its git blob sha1) before the weights
    (LFS: the sha256); the lock lists both, and a locked machine needs no origin for either."""
    from hubfiles import git_blob_sha1

    config = json.dumps(
        {
            "architecture": "resnet18",
            "num_classes": 1000,
            "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3},
        }
    ).encode()
    hub.add("config.json", config, lfs=False)
    name = f"hf-hub:{REPO}"
    lock = tmp_path / "omnizoo.lock"
    assert main(["lock", name, "-o", str(lock)]) == 0
    files = json.loads(lock.read_text())["files"]
    by_url = {f["urls"][0]: f for f in files}
    config_url = f"https://huggingface.co/{REPO}/resolve/main/config.json"
    assert by_url[config_url]["sha256"] == hashlib.sha256(config).hexdigest()
    assert by_url[config_url]["source"] == "origin" and by_url[config_url]["name"] is None
    assert by_url[HF_URL]["sha256"] == SHA_REAL and by_url[HF_URL]["name"] == f"timm:{name}"
    ref = Cache(hub_home / "weights").ref(config_url)
    assert ref is not None and ref["git_sha1"] == git_blob_sha1(config)
    heads = hub.heads("config.json") + hub.heads("model.safetensors")
    # Another machine: no origin, a mirror, the lock.
    shutil.rmtree(hub_home / "weights")
    for filename, data in (("config.json", config), ("model.safetensors", REAL)):
        weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/{filename}", data)
    env(
        monkeypatch,
        HF_ENDPOINT=weight_server.url("/mirror"),
        OMNIZOO_HF_ORIGIN=dead_url(),
        OMNIZOO_LOCK=str(lock),
    )
    assert download_weights(name).read_bytes() == REAL
    assert hub.heads("config.json") + hub.heads("model.safetensors") == heads
