"""What "verified" means, tried as an attacker with a mirror would: Hugging Face files checked
against the sha256 their origin announces, mirrors only for files with a known hash, the
declared format enforced, and unverified bytes never unpickled.

The origin is a Hub-like repository on the loopback server (``tests/hubfiles.py``, reached
through OMNIZOO_HF_ORIGIN); mirrors (HF_ENDPOINT, OMNIZOO_MIRRORS) are other paths of it.
Each test checks the error type and message and what entered the cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import zipfile
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
    blobs,
    env,
    git_blob_sha1,
    refs,
)
from omnizoo import download_weights
from omnizoo.cli.main import main
from omnizoo.errors import (
    DownloadError,
    FormatMismatchError,
    HashMismatchError,
    IntegrityError,
    OfflineError,
    RemoteNotFoundError,
    UnpinnedError,
    UnsafeCheckpointError,
)
from omnizoo.registry.registry import get_card
from omnizoo.values.card import WeightsFile
from omnizoo.weights.cache import Cache
from omnizoo.weights.download import fetch_verified
from weightserver import WeightServer


def test_the_card_is_an_unhashed_hugging_face_file(hub_home: Path) -> None:
    weights = get_card(NAME).weights
    assert weights is not None and weights.url == HF_URL and weights.hf_hub_id == REPO
    assert weights.sha256 is None and weights.hash_prefix is None and weights.size is None


# -- the finding: a lying mirror for an HF-hosted file -------------------------------------
def test_lying_hf_endpoint_is_refused(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for rev in ("main", COMMIT):
        weight_server.add(f"/mirror/{REPO}/resolve/{rev}/model.safetensors", LIE)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"))
    with pytest.raises(HashMismatchError, match=f"expected {SHA_REAL}, got {SHA_LIE}") as ei:
        download_weights(NAME)
    assert str(ei.value).startswith(
        weight_server.url(f"/mirror/{REPO}/resolve/{COMMIT}/model.safetensors: sha256 mismatch")
    )
    assert_nothing_cached(hub_home)
    assert hub.heads("model.safetensors") == 1  # the origin was asked for the sha256 ...
    assert hub.bodies(REAL) == 0  # ... and not for the body: HF_ENDPOINT replaces it


def test_lying_mirror_rewrite_falls_through_to_the_origin(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lie = weight_server.add(f"/mirror/{REPO}/resolve/main/model.safetensors", LIE)
    mirrors = {"https://huggingface.co/": weight_server.url("/mirror/")}
    env(monkeypatch, OMNIZOO_MIRRORS=json.dumps(mirrors))
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert fetched.path.read_bytes() == REAL and blobs(hub_home) == [SHA_REAL]
    assert (fetched.verification, fetched.revision, fetched.verified) == ("origin", COMMIT, True)
    assert weight_server.route(lie).bodies == 1  # tried first, its bytes refused
    assert hub.bodies(REAL) == 1
    by_url = {r["url"]: r for r in refs(hub_home)}
    assert set(by_url) == {HF_URL, PINNED_URL}  # the card's URL and the pinned commit's
    for ref in by_url.values():
        assert (ref["sha256"], ref["verification"], ref["revision"]) == (SHA_REAL, "origin", COMMIT)


def test_honest_hf_endpoint_is_verified_against_the_origin(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mirror's branch moved to other bytes; the pinned commit still has the right ones.
    weight_server.add(f"/mirror/{REPO}/resolve/main/model.safetensors", LIE)
    pinned = weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/model.safetensors", REAL)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"))
    assert download_weights(NAME).read_bytes() == REAL
    assert weight_server.route(pinned).bodies == 1 and hub.bodies(REAL) == 0
    # A cache hit makes no request at all, not even a HEAD.
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert fetched.verification == "origin" and hub.heads("model.safetensors") == 1


def test_offline_serves_a_verified_entry_without_any_call(
    hub_home: Path, hub: HubRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = download_weights(NAME)
    import omnizoo.weights.transport as transport

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("offline mode made a network call")

    monkeypatch.setattr(transport, "get_client", no_network)
    env(monkeypatch, OMNIZOO_OFFLINE="1")
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert (fetched.path, fetched.verification) == (path, "origin")
    other = f"https://huggingface.co/{REPO}/resolve/main/other.safetensors"
    with pytest.raises(OfflineError, match="OMNIZOO_OFFLINE=1 forbids downloading"):
        download_weights(other)
    assert hub.heads("model.safetensors") == 1


# -- files kept in git: the git blob sha1 ----------------------------------------------------
def test_git_file_is_verified_by_its_blob_sha1_never_as_a_sha256(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = b'{"architecture": "resnet18", "num_classes": 1000}\n'
    evil = b'{"architecture": "resnet50", "num_classes": 1000}\n'  # same size, other bytes
    url = f"https://huggingface.co/{REPO}/resolve/main/config.json"
    hub.add("config.json", config, lfs=False)
    fetched = fetch_verified(WeightsFile(urls=(url,), filename="config.json", format="pickle"))
    assert fetched.path.read_bytes() == config and fetched.verification == "origin"
    ref = Cache(hub_home / "weights").ref(url)
    assert ref is not None and ref["git_sha1"] == git_blob_sha1(config)
    assert ref["sha256"] == hashlib.sha256(config).hexdigest()  # the 40-hex sha1 is not it
    # A mirror with other bytes for it is refused by the sha1 the origin announced.
    other = f"https://huggingface.co/{REPO}/resolve/main/other.json"
    hub.add("other.json", config, lfs=False)
    weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/other.json", evil)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"))
    with pytest.raises(
        HashMismatchError,
        match=f"git blob sha1 mismatch: the origin announced {git_blob_sha1(config)}, got "
        f"{git_blob_sha1(evil)}",
    ):
        download_weights(other)


@pytest.mark.parametrize(
    ("announce", "error", "message"),
    [
        ({"sha256": "abc"}, IntegrityError, "X-Linked-Etag '\"abc\"', which is not a sha256"),
        ({"commit": "main"}, IntegrityError, "X-Repo-Commit 'main', which is not a commit id"),
        ({"size": 7}, HashMismatchError, "size mismatch: expected 7 bytes"),
        ({"sha256": SHA_LIE}, HashMismatchError, f"expected {SHA_LIE}, got {SHA_REAL}"),
        (
            {"lfs": False, "etag": SHA_REAL},  # a 64-hex ETag without X-Linked-Etag
            IntegrityError,
            "announced no file hash",
        ),
    ],
    ids=["etag-not-hex", "commit-not-hex", "size-lie", "sha256-lie", "sha256-as-etag"],
)
def test_origin_answers_that_cannot_be_trusted(
    hub_home: Path,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    announce: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    repo = HubRepo(weight_server, REPO)
    repo.add("model.safetensors", REAL, **announce)  # type: ignore[arg-type]
    env(monkeypatch, OMNIZOO_HF_ORIGIN=repo.base)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        download_weights(HF_URL)
    assert_nothing_cached(hub_home)


def test_origin_without_the_file_or_without_hub_headers(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env(monkeypatch, OMNIZOO_HF_ORIGIN=weight_server.url("/hub"))
    with pytest.raises(RemoteNotFoundError, match="HTTP 404 on HEAD: the Hub has no such file"):
        download_weights(HF_URL)
    weight_server.add(f"/hub/{REPO}/resolve/main/model.safetensors", REAL)  # a plain server
    with pytest.raises(IntegrityError, match=r"announced no file hash.*OMNIZOO_HF_ORIGIN"):
        download_weights(HF_URL)
    assert_nothing_cached(hub_home)


def test_invalid_origin_url_is_a_download_error(hub_home: Path) -> None:
    weights = WeightsFile(
        urls=("http://exa\x01mple/x/resolve/main/f.bin",), filename="f.bin", hf_hub_id="x"
    )
    with pytest.raises(DownloadError, match=r"could not ask the origin.*InvalidURL"):
        fetch_verified(weights)
    assert_nothing_cached(hub_home)


def test_cached_unverified_hub_file_is_checked_against_the_origin(
    hub_home: Path, hub: HubRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache written before verification states existed (or poisoned through a mirror
    then) is re-checked on the origin: the right bytes are upgraded without a download,
    the wrong ones replaced."""
    cache = Cache(hub_home / "weights")
    cache.ensure()
    for data in (REAL, LIE):
        temp = cache.new_temp("old")
        temp.write_bytes(data)
        cache.publish(temp, hashlib.sha256(data).hexdigest())
    cache.add_ref(HF_URL, SHA_LIE, name=NAME)  # an old ref: no "verification"
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert fetched.path.read_bytes() == REAL and fetched.verification == "origin"
    assert hub.bodies(REAL) == 0  # the cached right bytes were matched, not downloaded
    ref = cache.ref(HF_URL)
    assert ref is not None and (ref["sha256"], ref["verification"]) == (SHA_REAL, "origin")


def test_cached_unverified_hub_file_is_served_when_the_origin_is_down(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As offline: the copy already here is served, still unverified (never unpickled)."""
    cache = Cache(hub_home / "weights")
    cache.ensure()
    temp = cache.new_temp("old")
    temp.write_bytes(REAL)
    cache.publish(temp, SHA_REAL)
    cache.add_ref(HF_URL, SHA_REAL, name=NAME)  # an old ref: no "verification"
    env(monkeypatch, OMNIZOO_HF_ORIGIN=weight_server.url("/down"))
    weight_server.add(f"/down/{REPO}/resolve/main/model.safetensors", status=503)
    fetched = fetch_verified(get_card(NAME).weights, name=NAME)  # type: ignore[arg-type]
    assert (fetched.sha256, fetched.verification, fetched.verified) == (
        SHA_REAL,
        "unverified",
        False,
    )
    assert weight_server.route(f"/down/{REPO}/resolve/main/model.safetensors").heads == 2


# -- mirrors only for files with a known hash ----------------------------------------------
def test_mirror_is_not_used_for_a_file_with_no_expected_hash(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = weight_server.add("/orig/model.bin", REAL)
    mirror = weight_server.add("/mirror/model.bin", LIE)
    mirrors = {weight_server.url("/orig/"): weight_server.url("/mirror/")}
    env(monkeypatch, OMNIZOO_MIRRORS=json.dumps(mirrors))
    weights = WeightsFile(urls=(origin,), filename="model.bin", format="safetensors")
    fetched = fetch_verified(weights)
    assert fetched.path.read_bytes() == REAL
    assert (fetched.verification, fetched.verified) == ("unverified", False)
    assert weight_server.route(mirror).requests == 0
    # With the origin gone, the mirror is still not trusted; the error says how to pin it.
    gone = weight_server.add("/orig/gone.bin", status=404)
    weight_server.add("/mirror/gone.bin", LIE)
    with pytest.raises(UnpinnedError) as ei:
        download_weights(gone)
    message = str(ei.value)
    assert f"{gone}: HTTP 404" in message and weight_server.url("/mirror/gone.bin") in message
    assert f"omnizoo lock {gone} -o omnizoo.lock" in message and "sha256=..." in message
    assert weight_server.route("/mirror/gone.bin").requests == 0


def test_hf_endpoint_without_a_reachable_origin_needs_a_pin(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # an air-gapped site: nothing answers for the origin
    weight_server.add(f"/mirror/{REPO}/resolve/main/model.safetensors", REAL)
    env(
        monkeypatch,
        HF_ENDPOINT=weight_server.url("/mirror"),
        OMNIZOO_HF_ORIGIN=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(UnpinnedError, match="could not ask the origin for the file's sha256") as ei:
        download_weights(NAME)
    message = str(ei.value)
    assert message.startswith(f"{NAME}: ") and f"omnizoo lock {NAME} -o omnizoo.lock" in message
    assert weight_server.route(f"/mirror/{REPO}/resolve/main/model.safetensors").requests == 0
    # A sha256 known in advance makes the mirror usable (no origin needed).
    assert download_weights(NAME, sha256=SHA_REAL).read_bytes() == REAL
    assert fetch_verified(get_card(NAME).weights, name=NAME).verification == "pinned"  # type: ignore[arg-type]


# -- the declared format ---------------------------------------------------------------------
def torch_zip_bytes() -> bytes:
    """What torch.save writes: a zip whose first member is archive/data.pkl. The members carry
    a fixed date (as torch.save's do), so two calls give the same bytes whatever the clock."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in (("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def test_pickle_served_for_a_safetensors_card_is_refused(
    hub_home: Path, weight_server: WeightServer
) -> None:
    url = weight_server.add("/m/model.safetensors", torch_zip_bytes())
    weights = WeightsFile(urls=(url,), filename="model.safetensors", format="safetensors")
    with pytest.raises(
        FormatMismatchError,
        match=r"the card declares safetensors but the file is a torch.save file "
        r"\(pickle\); refused before loading",
    ) as ei:
        fetch_verified(weights, name="test:evil")
    assert (ei.value.declared, ei.value.found) == ("safetensors", "pickle")
    assert_nothing_cached(hub_home)
    # Already in the cache (put there by any means): refused when asked for as that card.
    assert download_weights(url).read_bytes() == torch_zip_bytes()  # as a plain URL: no card
    with pytest.raises(FormatMismatchError, match="declares safetensors"):
        fetch_verified(weights, name="test:evil")


class _Payload:
    """Runs code when unpickled (writes PWNED in the current directory)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_trust_pickle_never_unpickles_an_unverified_file(
    hub_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    import torch
    import torchvision

    from omnizoo import create_model

    monkeypatch.chdir(tmp_path)
    card = get_card("torchvision:squeezenet1_0.IMAGENET1K_V1")
    buf = io.BytesIO()
    state = torchvision.models.squeezenet1_0().state_dict()
    torch.save({"state_dict": state, "payload": _Payload()}, buf)
    data = buf.getvalue()
    url = weight_server.add("/m/squeezenet.pth", data)  # no hash anywhere: unverified
    unverified = WeightsFile(urls=(url,), filename="squeezenet.pth", format="pickle")
    env(monkeypatch, OMNIZOO_TRUST_PICKLE="1")
    with pytest.raises(UnsafeCheckpointError, match="only applies to files verified by hash"):
        create_model(dataclasses.replace(card, weights=unverified), pretrained=True)
    assert not (tmp_path / "PWNED").exists()
    # The same bytes pinned by their sha256 are verified: OMNIZOO_TRUST_PICKLE applies to them.
    pinned = dataclasses.replace(unverified, sha256=hashlib.sha256(data).hexdigest())
    model = create_model(dataclasses.replace(card, weights=pinned), pretrained=True)
    assert (tmp_path / "PWNED").exists()
    assert torch.equal(model.features[0].weight, state["features.0.weight"])


# -- the command line ------------------------------------------------------------------------
def test_cli_download_through_a_lying_mirror_is_refused(
    hub_home: Path,
    hub: HubRepo,
    weight_server: WeightServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weight_server.add(f"/mirror/{REPO}/resolve/{COMMIT}/model.safetensors", LIE)
    env(monkeypatch, HF_ENDPOINT=weight_server.url("/mirror"))
    assert main(["download", NAME]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omnizoo: error: ")
    assert f"sha256 mismatch: expected {SHA_REAL}, got {SHA_LIE}" in lines[0]
    assert_nothing_cached(hub_home)


def test_cache_list_and_info_show_the_verification_state(
    hub_home: Path, hub: HubRepo, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    download_weights(NAME)  # origin
    data = random.Random(3).randbytes(10_000)
    sha = hashlib.sha256(data).hexdigest()
    download_weights(weight_server.add(f"/m/tiny-{sha[:8]}.pth", data))  # prefix
    download_weights(weight_server.add("/m/plain.bin", LIE))  # unverified
    onnx = b"\x08\x07" + data
    pinned = weight_server.add("/m/pinned.onnx", onnx)
    download_weights(pinned, sha256=hashlib.sha256(onnx).hexdigest())
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^{SHA_REAL[:12]} +293.0 KiB  origin      {NAME}$", out, re.M), out
    assert f"[origin, revision {COMMIT[:12]}]" in out
    for state in ("prefix", "unverified", "pinned"):
        assert f"  {state}  " in out, out
    assert main(["cache", "list", "--json"]) == 0
    listed = {b["sha256"]: b for b in json.loads(capsys.readouterr().out)}
    assert listed[SHA_REAL]["verification"] == "origin"
    assert listed[SHA_REAL]["refs"][0]["revision"] == COMMIT
    assert listed[SHA_LIE]["verification"] == "unverified"
    assert main(["cache", "info"]) == 0
    assert "verified: 1 pinned, 1 origin, 1 prefix, 1 unverified" in capsys.readouterr().out
    assert main(["info", NAME]) == 0
    out = capsys.readouterr().out
    assert "sha256 announced by the Hugging Face Hub (origin), checked at download" in out
    assert f"cached:       {SHA_REAL[:12]} (origin, revision {COMMIT[:12]})" in out


def test_readme_claims_about_mirrors_match_docs_word_for_word() -> None:
    """The README states exactly the mirror guarantee docs/cache.md states (and tests)."""
    root = Path(__file__).resolve().parents[1]

    def words(path: Path) -> str:
        return " ".join(path.read_text(encoding="utf-8").split())

    readme, cache = words(root / "README.md"), words(root / "docs" / "cache.md")
    start = "A mirror (an `OMNIZOO_MIRRORS` rewrite or `HF_ENDPOINT`) is used only"
    claim = readme[readme.index(start) : readme.index("to close that gap.") + 18]
    assert claim in cache and cache.count(claim) == 2  # the rules and the mirrors section
    assert "any mirror is safe" not in readme and "any mirror is safe" not in cache
