"""``omnizoo download`` and ``omnizoo cache list|verify|remove|prune|info``, through
``omnizoo.cli.main.main`` as a user would run them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omnizoo import download_weights
from omnizoo.cli.main import main
from omnizoo.weights.cache import Cache
from weightserver import WeightServer

A = os.urandom(50_000)
B = os.urandom(70_000)
SHA_A = hashlib.sha256(A).hexdigest()
SHA_B = hashlib.sha256(B).hexdigest()


@pytest.fixture
def two_files(isolated_home: Path, weight_server: WeightServer) -> tuple[str, str]:
    url_a = weight_server.add(f"/m/a-{SHA_A[:8]}.pth", A)
    url_b = weight_server.add("/m/b.safetensors", B)
    download_weights(url_a)
    download_weights(url_b)
    return url_a, url_b


def blob(home: Path, sha: str) -> Path:
    return home / "weights" / "blobs" / "sha256" / sha


def test_download_prints_the_verified_path(
    isolated_home: Path, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = weight_server.add("/m/model.onnx", A)
    assert main(["download", url, "--sha256", SHA_A]) == 0
    assert capsys.readouterr().out.strip() == str(blob(isolated_home, SHA_A))
    bad = weight_server.add("/m/gone.pth", status=404)
    assert main(["download", bad]) == 1  # a runtime error (2 is for usage errors)
    err = capsys.readouterr().err
    assert err.startswith("omnizoo: error: ") and f"{bad}: HTTP 404" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_download_console_script(isolated_home: Path, weight_server: WeightServer) -> None:
    url = weight_server.add(f"/m/a-{SHA_A[:8]}.pth", A)
    env = dict(os.environ, OMNIZOO_HOME=str(isolated_home), OMNIZOO_PROGRESS="0")
    code = "import sys; from omnizoo.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, "download", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(blob(isolated_home, SHA_A))


def test_cache_info_and_list(
    two_files: tuple[str, str], isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"root:     {isolated_home / 'weights'}" in out
    assert "files:    2 (117.2 KiB)" in out
    assert main(["cache", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["blobs"], info["refs"], info["total_bytes"]) == (2, 2, len(A) + len(B))
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert SHA_A[:12] in out and SHA_B[:12] in out and two_files[0] in out
    assert main(["cache", "list", "--json"]) == 0
    listed = {e["sha256"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed[SHA_B]["urls"] == [two_files[1]] and listed[SHA_B]["size"] == len(B)


def test_cache_verify_detects_corruption(
    two_files: tuple[str, str], isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cache", "verify"]) == 0
    assert "verified 2 file(s): 2 ok, 0 corrupted" in capsys.readouterr().out
    path = blob(isolated_home, SHA_B)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # same size, one byte flipped
        f.seek(1000)
        f.write(bytes([B[1000] ^ 0xFF]))
    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPTED {path}: expected sha256 {SHA_B}" in out
    assert "1 ok, 1 corrupted" in out
    # The corrupted file is never served: the next use downloads it again.
    assert download_weights(two_files[1]).read_bytes() == B
    assert main(["cache", "verify"]) == 0


@pytest.mark.parametrize("how", ["url", "sha", "filename"])
def test_cache_remove(
    two_files: tuple[str, str], isolated_home: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    target = {"url": two_files[0], "sha": SHA_A[:10], "filename": f"a-{SHA_A[:8]}.pth"}[how]
    assert main(["cache", "remove", target]) == 0
    assert f"removed {SHA_A[:12]}" in capsys.readouterr().out
    assert not blob(isolated_home, SHA_A).exists()
    assert blob(isolated_home, SHA_B).exists()
    assert Cache(isolated_home / "weights").ref(two_files[0]) is None
    assert main(["cache", "remove", target]) == 1
    assert "not in the weights cache" in capsys.readouterr().err


def test_cache_remove_by_model_name(
    isolated_home: Path, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from omnizoo.values.card import WeightsFile
    from omnizoo.weights.download import fetch_verified

    url = weight_server.add(f"/m/a-{SHA_A[:8]}.pth", A)
    fetch_verified(WeightsFile(urls=(url,), filename=url.rsplit("/", 1)[-1]), name="cadene:a")
    assert main(["cache", "list"]) == 0
    assert "cadene:a" in capsys.readouterr().out
    assert main(["cache", "remove", "cadene:a"]) == 0
    assert not blob(isolated_home, SHA_A).exists()


def test_cache_prune(
    two_files: tuple[str, str], isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = Cache(isolated_home / "weights")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    host = cache.new_temp("k").name.split(".")[1]
    leftover = cache.tmp / f"{'0' * 32}.{host}.{dead}.deadbeef.part"
    leftover.write_bytes(b"partial")
    alive = cache.new_temp("f" * 32)  # ours: a download in progress is kept
    alive.write_bytes(b"in progress")
    # An unreferenced blob: its only ref is deleted.
    ref_a = next(Path(r["_path"]) for r in cache.all_refs() if r["sha256"] == SHA_A)
    ref_a.unlink()
    assert main(["cache", "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete partial: " + str(leftover) in out
    assert leftover.exists()
    # ... but it was written a moment ago: within the grace period, prune keeps it
    assert f"blobs: {blob(isolated_home, SHA_A)}" not in out
    two_hours_ago = time.time_ns() - 2 * 3600 * 10**9
    os.utime(blob(isolated_home, SHA_A), ns=(two_hours_ago, two_hours_ago))
    assert main(["cache", "prune"]) == 0
    out = capsys.readouterr().out
    assert f"deleted blobs: {blob(isolated_home, SHA_A)}" in out
    assert not leftover.exists() and alive.exists()
    assert not blob(isolated_home, SHA_A).exists() and blob(isolated_home, SHA_B).exists()
    assert main(["cache", "verify"]) == 0


def test_cache_prune_removes_stale_card_indexes(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from omnizoo import list_models
    from omnizoo.registry.adapters import get_adapter

    list_models(source="efficientnet")  # writes the current efficientnet index
    index = isolated_home / "index"
    current = index / f"{get_adapter('efficientnet').index_key()}.json"
    assert current.is_file()
    old = index / "efficientnet-0.6.3-schema1-cards2.json"  # an older library version's
    old.write_text("{}")
    foreign = index / "notes.json"  # not a source's index: never touched
    foreign.write_text("{}")
    assert main(["cache", "prune", "--dry-run"]) == 0
    assert f"would delete index: {old}" in capsys.readouterr().out and old.exists()
    assert main(["cache", "prune"]) == 0
    assert f"deleted index: {old}" in capsys.readouterr().out
    assert not old.exists() and current.is_file() and foreign.is_file()
