"""Another tool's cache is evidence of nothing: tried as an attacker with write access to a
shared Hugging Face cache (``HF_HUB_CACHE``) or torch.hub cache would.

A lying ``HF_ENDPOINT`` leaves its bytes in huggingface_hub's layout
(``models--org--name/refs/main`` -> commit, ``snapshots/<commit>/<file>`` ->
``../../blobs/<etag>``) under a blob named by the sha256 the mirror announced. omnizoo adopts a
file from there only against a hash known independently of that cache (the caller's, a card's
or lock's sha256, the origin's HEAD, a torch.hub file-name prefix), re-hashing the bytes; the
blob's name and the cache's refs are never evidence. Offline, an unpinned file is served as
``unverified`` (safetensors, with a warning), and a pickle never. The origin is a Hub-like
repository on the loopback server (``tests/hubfiles.py``); every request is counted.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubfiles import (
    COMMIT,
    HF_URL,
    NAME,
    REAL,
    REPO,
    SHA_REAL,
    HubRepo,
    blobs,
    env,
    git_blob_sha1,
    refs,
    safetensors_blob,
)
from omnizoo import download_weights
from omnizoo.cli.main import main
from omnizoo.errors import OfflineError
from versions import needs_timm_hub_names
from weightserver import WeightServer

POISON = safetensors_blob(300_000, 3)  # valid safetensors, other weights: a backdoor
SHA_POISON = hashlib.sha256(POISON).hexdigest()
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def plant(
    cache: Path,
    repo: str,
    files: dict[str, bytes],
    *,
    commit: str = COMMIT,
    ref: str | None = "main",
    blob_names: dict[str, str] | None = None,
) -> Path:
    """Write ``files`` into a Hugging Face cache at ``cache`` the way huggingface_hub lays them
    out; each blob is named as a lying mirror would have announced it (the sha256 of the bytes
    it served, or the git blob sha1 of a small file) unless ``blob_names`` says otherwise.
    Returns the repository's folder."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    if ref is not None:
        (root / "refs" / ref).write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        if blob_names and filename in blob_names:
            name = blob_names[filename]
        elif filename.endswith(".json"):
            name = git_blob_sha1(data)
        else:
            name = hashlib.sha256(data).hexdigest()
        (root / "blobs" / name).write_bytes(data)
        (snapshot / filename).symlink_to(Path("..", "..", "blobs", name))
    return root


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache (HF_HUB_CACHE) for the test to fill."""
    cache = tmp_path / "hf-hub-cache"
    cache.mkdir()
    env(monkeypatch, HF_HUB_CACHE=str(cache))
    return cache


# -- a poisoned blob, named by the sha256 the lying mirror announced ------------------------------
@pytest.mark.parametrize(
    "lie",
    [POISON, REAL + b"\0" * 4096, REAL[:-4096]],
    ids=["other-bytes", "size-lie-longer", "size-lie-truncated"],
)
def test_poisoned_hf_cache_blob_is_not_adopted_on_its_name(
    hub: HubRepo, hub_home: Path, hf_cache: Path, lie: bytes
) -> None:
    """The blob holds what the lying mirror served, named by the sha256 it announced: other
    weights, or the real ones with a tail (a payload appended) or cut short."""
    plant(hf_cache, REPO, {"model.safetensors": lie})
    path = download_weights(NAME)
    assert path.read_bytes() == REAL
    # the origin was asked (one HEAD) and the real bytes downloaded
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 1
    assert blobs(hub_home) == [SHA_REAL]
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "origin" and ref["revision"] == COMMIT


@pytest.fixture(scope="module")
def resnet18_files() -> tuple[bytes, bytes, Any]:
    """(the origin's model.safetensors, a backdoored copy, the origin's state dict)."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(11)
    state = timm.create_model("resnet18").state_dict()
    state = {k: v.contiguous() for k, v in state.items()}
    real = save(state)
    evil = dict(state, **{"fc.bias": state["fc.bias"] + 100.0})  # always predicts the max
    return real, save(evil), state


def test_create_model_never_loads_a_poisoned_hf_cache_file(
    hub_home: Path,
    weight_server: WeightServer,
    hf_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    resnet18_files: tuple[bytes, bytes, Any],
) -> None:
    import torch

    from omnizoo import create_model

    real, evil, state = resnet18_files
    origin = HubRepo(weight_server, REPO)
    origin.add("model.safetensors", real)
    env(monkeypatch, OMNIZOO_HF_ORIGIN=origin.base)
    plant(hf_cache, REPO, {"model.safetensors": evil})
    model = create_model("timm:resnet18.a1_in1k", pretrained=True)
    assert torch.equal(model.fc.bias, state["fc.bias"])  # the origin's weights, not the lie
    assert origin.heads("model.safetensors") == 1 and origin.bodies(real) == 1
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "origin"


def test_honest_hf_cache_file_is_adopted_after_one_head_and_no_body(
    hub: HubRepo, hub_home: Path, hf_cache: Path
) -> None:
    root = plant(hf_cache, REPO, {"model.safetensors": REAL})
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 0
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "origin" and ref["revision"] == COMMIT
    assert ref["fetched_from"] == (root / "snapshots" / COMMIT / "model.safetensors").as_uri()


def test_pinned_sha256_adopts_from_the_hf_cache_whatever_the_blob_is_called(
    hub: HubRepo, hub_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's sha256 is independent of the cache: no request at all, state pinned,
    even for a blob whose name is no hash (a copy, a cache without symlinks)."""
    plant(hf_cache, REPO, {"model.safetensors": REAL}, blob_names={"model.safetensors": "copy"})
    assert download_weights(NAME, sha256=SHA_REAL).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 0 and hub.bodies(REAL) == 0
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "pinned"
    assert "revision" not in ref  # the cache's refs/main is no evidence of a commit
    # the same pin against a poisoned blob named by the pin: refused, downloaded instead
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "second"))
    blob = hf_cache / f"models--{REPO.replace('/', '--')}" / "blobs" / "copy"
    blob.unlink()
    blob.write_bytes(POISON)
    assert download_weights(NAME, sha256=SHA_REAL).read_bytes() == REAL
    assert hub.bodies(REAL) == 1 and blobs(hub_home / "second") == [SHA_REAL]


def test_lock_pin_adopts_the_locked_commit_offline_whatever_refs_main_says(
    hub: HubRepo, hub_home: Path, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock pins sha256 and commit: the cache's refs/main (moved to a poisoned commit) is not
    consulted first, and the locked commit's file (a plain copy, no symlink) is adopted as
    pinned without any request, even offline."""
    from omnizoo.weights.lockfile import LockEntry, WeightsLock

    plant(hf_cache, REPO, {"model.safetensors": POISON}, commit=OTHER_COMMIT)
    snapshot = hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(REAL)
    lock = tmp_path / "omnizoo.lock"
    entry = LockEntry((HF_URL,), SHA_REAL, len(REAL), NAME, COMMIT, "safetensors", "origin")
    WeightsLock((entry,)).save(lock)
    env(monkeypatch, OMNIZOO_LOCK=str(lock), OMNIZOO_OFFLINE="1")
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 0
    by_url = {r["url"]: r for r in refs(hub_home)}
    assert by_url[HF_URL]["verification"] == "pinned" and by_url[HF_URL]["revision"] == COMMIT


# -- offline: unverified at best ------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["OMNIZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_unpinned_hf_cache_file_is_only_unverified(
    hub: HubRepo,
    hub_home: Path,
    hf_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
) -> None:
    plant(hf_cache, REPO, {"model.safetensors": POISON})  # nothing offline can tell
    env(monkeypatch, **{variable: "1"})
    with caplog.at_level(logging.WARNING, logger="omnizoo.weights"):
        assert download_weights(NAME).read_bytes() == POISON
    assert "unverified" in caplog.text
    assert hub.heads("model.safetensors") == 0
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "unverified" and "revision" not in ref
    # Online again: the origin is asked, the lie replaced by the real file.
    monkeypatch.delenv(variable)
    env(monkeypatch)
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 1


def test_offline_unverified_becomes_origin_when_the_origin_agrees(
    hub: HubRepo, hub_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant(hf_cache, REPO, {"model.safetensors": REAL})
    env(monkeypatch, OMNIZOO_OFFLINE="1")
    download_weights(NAME)
    monkeypatch.delenv("OMNIZOO_OFFLINE")
    env(monkeypatch)
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 0  # no body needed
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["verification"] == "origin" and ref["revision"] == COMMIT


# -- hf-hub: names, a mirror's config.json naming a pickle, OMNIZOO_TRUST_PICKLE=1 -----------------
class _Payload:
    """Creates the file ``marker`` when unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def hf_hub_attack(
    hub_home: Path,
    weight_server: WeightServer,
    hf_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[HubRepo, Path, Any, bytes]]:
    """The origin publishes someone/tiny (config.json -> model.safetensors); the shared Hugging
    Face cache holds a mirror's config.json naming pytorch_model.bin, and that file: a real
    state dict plus a payload. Yields (origin, marker, origin state dict, origin weights)."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(5)
    src = timm.create_model("test_resnet", num_classes=3)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    cfg = dict(src.pretrained_cfg, num_classes=3)  # type: ignore[arg-type]
    cfg.pop("hf_hub_id", None)
    config = {"architecture": "test_resnet", "num_classes": 3, "pretrained_cfg": cfg}
    honest = json.dumps(config, default=list).encode()
    weights = save(state)
    origin = HubRepo(weight_server, "someone/tiny")
    origin.add("config.json", honest, lfs=False)
    origin.add("model.safetensors", weights)
    marker = tmp_path / "PWNED"
    evil_cfg = dict(config, pretrained_cfg=dict(cfg, hf_hub_filename="pytorch_model.bin"))
    buf = io.BytesIO()
    torch.save({**state, "x": _Payload(str(marker))}, buf)
    plant(
        hf_cache,
        "someone/tiny",
        {
            "config.json": json.dumps(evil_cfg, default=list).encode(),
            "pytorch_model.bin": buf.getvalue(),
        },
    )
    env(monkeypatch, OMNIZOO_HF_ORIGIN=origin.base, OMNIZOO_TRUST_PICKLE="1")
    yield origin, marker, state, weights


@needs_timm_hub_names
def test_hf_hub_name_never_runs_a_pickle_from_a_poisoned_cache(
    hf_hub_attack: tuple[HubRepo, Path, Any, bytes],
) -> None:
    import torch

    from omnizoo import create_model

    origin, marker, state, weights = hf_hub_attack
    model = create_model("hf-hub:someone/tiny", pretrained=True)
    assert not marker.exists()
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value)
    assert origin.bodies(weights) == 1  # the origin's config and weights, not the cache's


@needs_timm_hub_names
def test_hf_hub_name_offline_never_unpickles_an_unpinned_cache_file(
    hf_hub_attack: tuple[HubRepo, Path, Any, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnizoo import create_model

    origin, marker, _, _ = hf_hub_attack
    env(monkeypatch, OMNIZOO_OFFLINE="1")
    with pytest.raises(
        OfflineError, match=r"pickle.*pytorch_model\.bin|pytorch_model\.bin.*pickle"
    ) as ei:
        create_model("hf-hub:someone/tiny", pretrained=True)
    assert "never used" in str(ei.value) and "omnizoo lock" in str(ei.value)  # why, and the fix
    assert not marker.exists()
    assert origin.heads("config.json") == 0 and origin.heads("model.safetensors") == 0


# -- the attacker's variants ------------------------------------------------------------------
def test_snapshot_symlinked_outside_the_cache_is_not_followed(
    hub: HubRepo, hub_home: Path, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = plant(hf_cache, REPO, {"model.safetensors": POISON})
    outside = tmp_path / "elsewhere"
    (outside / "blobs").mkdir(parents=True)
    (outside / "snap").mkdir()
    (outside / "blobs" / SHA_POISON).write_bytes(POISON)
    (outside / "snap" / "model.safetensors").symlink_to(Path("..", "blobs", SHA_POISON))
    snapshot = root / "snapshots" / COMMIT
    (snapshot / "model.safetensors").unlink()
    snapshot.rmdir()
    snapshot.symlink_to(outside / "snap", target_is_directory=True)
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.bodies(REAL) == 1
    # offline: a file outside the repository's folder is not even served as unverified
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "second"), OMNIZOO_OFFLINE="1")
    with pytest.raises(OfflineError):
        download_weights(NAME)


@pytest.mark.timeout(60)
def test_non_files_in_the_hf_cache_never_block_nor_get_read(
    hub: HubRepo, hub_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO as the blob, a snapshot file linked to /dev/zero, a FIFO as refs/main: each is
    skipped at once (opened non-blocking, regular files only), online and offline."""
    root = plant(hf_cache, REPO, {"model.safetensors": REAL})
    blob = root / "blobs" / SHA_REAL
    blob.unlink()
    os.mkfifo(blob)
    assert download_weights(NAME).read_bytes() == REAL
    link = root / "snapshots" / COMMIT / "model.safetensors"
    link.unlink()
    link.symlink_to("/dev/zero")
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "second"))
    assert download_weights(NAME, sha256=SHA_REAL).read_bytes() == REAL
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "third"), OMNIZOO_OFFLINE="1")
    with pytest.raises(OfflineError):
        download_weights(NAME)
    ref = root / "refs" / "main"
    ref.unlink()
    os.mkfifo(ref)
    monkeypatch.delenv("OMNIZOO_OFFLINE")
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "fourth"))
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.bodies(REAL) == 3


def test_refs_main_pointing_to_another_commit_is_no_evidence(
    hub: HubRepo, hub_home: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """refs/main moved to a commit whose snapshot holds the lie: the origin's commit decides."""
    plant(hf_cache, REPO, {"model.safetensors": POISON}, commit=OTHER_COMMIT)
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 1 and hub.bodies(REAL) == 1
    (ref,) = [r for r in refs(hub_home) if r["url"] == HF_URL]
    assert ref["revision"] == COMMIT
    # the origin's commit is looked at first: its file is adopted (no body), refs/main or not
    env(monkeypatch, OMNIZOO_HOME=str(hub_home / "second"))
    plant(hf_cache, REPO, {"model.safetensors": REAL}, ref=None)
    assert download_weights(NAME).read_bytes() == REAL
    assert hub.heads("model.safetensors") == 2 and hub.bodies(REAL) == 1


# -- omnizoo cache add with a relative path --------------------------------------------------------
@pytest.mark.parametrize("pinned", [True, False])
def test_cache_add_relative_path(
    hub_home: Path,
    weight_server: WeightServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pinned: bool,
) -> None:
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    name = "mine.bin" if pinned else f"mine-{sha[:10]}.bin"  # else: a torch.hub hash prefix
    url = weight_server.add(f"/models/{name}", data)
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.bin").write_bytes(data)
    monkeypatch.chdir(work)
    extra = ["--sha256", sha] if pinned else []
    assert main(["cache", "add", "mine.bin", "--as", url, *extra]) == 0
    assert ("pinned" if pinned else "prefix") in capsys.readouterr().out
    assert blobs(hub_home) == [sha]
    (ref,) = refs(hub_home)
    assert ref["fetched_from"] == (work / "mine.bin").as_uri()
    assert download_weights(url).read_bytes() == data
    assert weight_server.route(url).requests == 0
    # A failure leaves nothing: no blob without its ref, no raw traceback.
    (work / "other.bin").write_bytes(os.urandom(1000))
    os.mkfifo(work / "fifo.bin")
    for bad in ("other.bin", "fifo.bin"):
        assert main(["cache", "add", bad, "--as", url, "--sha256", "0" * 64]) == 1
        assert "unexpected" not in capsys.readouterr().err
    assert blobs(hub_home) == [sha] and len(refs(hub_home)) == 1
