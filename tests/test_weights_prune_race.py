"""``cache prune`` running in a loop against 200 concurrent downloads in real processes.

Before the fix, 94 of 200 fresh downloads were deleted, callers were handed paths that no
longer existed, and another process's JSON temp file vanished under it. Now prune takes the
cache guard, re-reads the refs under it, spares anything younger than its grace period and
every live process's temp files, and a download re-checks its blob under the guard before
pointing a ref at it: 0 lost.

Half of the downloads are fresh URLs; the other half ask for a sha256 whose blob is already
in the cache, unreferenced and two hours old: exactly what prune deletes, so those race the
guard rather than the grace period. Stale lock files of the same keys are planted too, so
prune also tries to delete lock files the downloads are taking.
"""

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
from omnizoo.weights.cache import Cache, url_key
from weightserver import WeightServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and flock")

N_FILES = 200
N_WORKERS = 8

WORKER = """
import hashlib, json, os, sys, time
from pathlib import Path
from omnizoo import download_weights
jobs = json.loads(Path(sys.argv[1]).read_text())
ready, go = sys.argv[2:4]
Path(ready).touch()
while not os.path.exists(go):
    time.sleep(0.005)
out = []
for url, sha, expected in jobs:
    try:
        path = download_weights(url, sha256=sha)
        exists = os.path.exists(path)
        got = hashlib.sha256(path.read_bytes()).hexdigest() if exists else None
        out.append({"url": url, "path": str(path), "exists": exists, "sha": got})
    except Exception as exc:
        out.append({"url": url, "error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(out))
"""

PRUNER = """
import json, os, sys, time
from pathlib import Path
from omnizoo.weights.download import get_cache
stop, ready, go = sys.argv[1:4]
cache = get_cache()
runs, deleted, errors = 0, {}, []
Path(ready).touch()
while not os.path.exists(go):
    time.sleep(0.001)
while not os.path.exists(stop):
    try:
        report = cache.prune()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        report = {}
    runs += 1
    for kind, paths in report.items():
        deleted[kind] = deleted.get(kind, 0) + len(paths)
print(json.dumps({"runs": runs, "deleted": deleted, "errors": errors}))
"""


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.01)


def test_prune_in_a_loop_loses_none_of_200_concurrent_downloads(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    cache = Cache(isolated_home / "weights")
    cache.ensure()
    two_hours_ago = time.time() - 2 * 3600
    jobs: list[tuple[str, str | None, str]] = []
    planted: list[str] = []
    for i in range(N_FILES):
        data = os.urandom(2_000 + 37 * i)
        sha = hashlib.sha256(data).hexdigest()
        url = weight_server.add(f"/race/file-{i}.bin", data)  # no hash in the name
        if i % 2:
            # Already cached, unreferenced and old: what prune deletes, unless a download
            # points a ref at it first (under the guard).
            blob = cache.blob_path(sha)
            blob.write_bytes(data)
            blob.chmod(0o444)
            os.utime(blob, (two_hours_ago, two_hours_ago))
            planted.append(url)
            jobs.append((url, sha, sha))
            key = sha
        else:
            jobs.append((url, None, sha))
            key = url_key(url)
        lock = cache.locks / f"{key}.lock"  # a stale lock file of the very same key
        lock.touch()
        os.utime(lock, (two_hours_ago, two_hours_ago))
    env = dict(
        os.environ,
        OMNIZOO_HOME=str(isolated_home),
        OMNIZOO_PROGRESS="0",
        OMNIZOO_BACKOFF="0.01",
        OMNIZOO_RETRIES="3",
    )
    stop, go = tmp_path / "stop", tmp_path / "go"
    ready = [tmp_path / f"ready-{w}" for w in range(N_WORKERS + 1)]
    t0 = time.monotonic()
    pruner = subprocess.Popen(
        [sys.executable, "-c", PRUNER, str(stop), str(ready[-1]), str(go)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers = []
    try:
        for w in range(N_WORKERS):
            job_file = tmp_path / f"jobs-{w}.json"
            job_file.write_text(json.dumps(jobs[w::N_WORKERS]))
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(job_file), str(ready[w]), str(go)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for path in ready:
            _wait_for(path)  # everything imported: prune and the downloads start together
        go.touch()
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        stop.touch()
        for w in workers:
            if w.poll() is None:
                w.kill()
        prune_out, prune_err = pruner.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert [w.returncode for w in workers] == [0] * N_WORKERS, [e for _, e in outputs]
    results = [r for out, _ in outputs for r in json.loads(out)]
    prune = json.loads(prune_out)
    expected = {url: sha for url, _, sha in jobs}
    assert len(results) == N_FILES
    errors = [r for r in results if "error" in r]
    done = [r for r in results if "error" not in r]
    lost = [r for r in done if not r["exists"] or r["sha"] != expected[r["url"]]]
    # Still there after the dust settles: each is referenced, so prune keeps it.
    gone = [r["path"] for r in done if not Path(r["path"]).is_file()]
    counts = {"errors": len(errors), "dead paths returned": len(lost), "deleted later": len(gone)}
    # A string, not a tuple: pytest shortens the repr of anything else, and a flake needs
    # the whole error line to be diagnosed.
    detail = "\n".join(json.dumps(r) for r in (errors + lost)[:5])
    assert counts == dict.fromkeys(counts, 0), f"{counts}\n{detail}"
    assert pruner.returncode == 0 and prune["errors"] == [], (prune, prune_err)
    assert cache.verify() == []
    assert {ref["url"] for ref in cache.all_refs()} >= set(expected)
    refetched = sum(weight_server.route(url).bodies for url in planted)
    assert prune["runs"] >= 3, prune  # prune really ran alongside the downloads
    assert elapsed < 600, elapsed  # a hang, not a speed check: it takes 10-80 s under load
    print(
        f"\nprune race: {N_FILES} downloads in {N_WORKERS} processes, 0 lost, "
        f"{prune['runs']} prune runs deleting {prune['deleted']}, "
        f"{refetched} of {len(planted)} planted blobs fetched again, {elapsed:.1f}s"
    )


def test_prune_spares_live_temp_files_young_files_and_refuses_a_tiny_grace(
    isolated_home: Path,
) -> None:
    """Before: every ``.*.tmp`` was deleted, another process's live one included, and so
    was an unreferenced blob published a moment ago (its ref not written yet)."""
    from omnizoo.errors import ConfigurationError
    from omnizoo.weights.fsafe import HOST

    cache = Cache(isolated_home / "weights")
    cache.ensure()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        live = cache.refs / f".a.json.{HOST}.{sleeper.pid}.0badf00d.tmp"
        mine = cache.meta / f".b.json.{HOST}.{os.getpid()}.0badf00d.tmp"
        foreign = cache.refs / ".c.json.otherhost.1.0badf00d.tmp"
        stale = cache.refs / f".d.json.{HOST}.{dead}.0badf00d.tmp"
        data = b"just published, its ref not written yet"
        young = cache.blob_path(hashlib.sha256(data).hexdigest())
        for path in (live, mine, foreign, stale):
            path.write_text("{}")
        young.write_bytes(data)
        with pytest.raises(ConfigurationError, match=r"grace=10 seconds: must be .* >= 60"):
            cache.prune(grace=10)
        report = cache.prune(grace=60)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert report["partial"] == [str(stale)] and report["blobs"] == []
    assert live.exists() and mine.exists() and foreign.exists() and young.exists()
    assert not stale.exists()


def _plant_old_unreferenced_blob(cache: Cache, data: bytes) -> Path:
    """A blob no ref points at, two hours old: what ``prune`` deletes."""
    cache.ensure()
    blob = cache.blob_path(hashlib.sha256(data).hexdigest())
    blob.write_bytes(data)
    blob.chmod(0o444)
    two_hours_ago = time.time() - 2 * 3600
    os.utime(blob, (two_hours_ago, two_hours_ago))
    return blob


def test_prune_right_after_a_hit_was_validated_is_a_miss_not_a_crash(
    isolated_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request naming the sha256 of an old unreferenced blob finds it valid; ``prune`` then
    deletes it before the hit takes the guard. Before: ``FileNotFoundError`` from the
    ``lstat`` of the dead path (outside the guard), the flake of the race test above
    (``valid_blob`` hashed and recorded the blob, then returned its path although it was gone).
    Now: a miss, and the file is fetched again."""
    cache = Cache(isolated_home / "weights")
    data = os.urandom(5_000)
    sha = hashlib.sha256(data).hexdigest()
    blob = _plant_old_unreferenced_blob(cache, data)
    url = weight_server.add("/race/valid-then-pruned.bin", data)
    original = Cache.valid_blob
    pruned: list[list[str]] = []

    def valid_then_pruned(self: Cache, digest: str) -> Path | None:
        path = original(self, digest)
        if not pruned:  # the first check only: `prune` runs right after it
            pruned.append(self.prune()["blobs"])
        return path

    monkeypatch.setattr(Cache, "valid_blob", valid_then_pruned)
    path = download_weights(url, sha256=sha)
    assert pruned == [[str(blob)]]
    assert path == blob and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert weight_server.route(url).bodies == 1  # fetched again
    ref = cache.ref(url)
    assert ref is not None and ref["sha256"] == sha


def test_prune_between_publish_and_ref_of_a_blob_already_there_fetches_again(
    isolated_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download whose bytes are already cached (an old blob no ref points at: another URL
    of the same bytes was forgotten) keeps the old blob instead of its own copy; ``prune``
    deletes that blob before the ref is written. Before: ``CacheError`` ("was deleted right
    after it was downloaded"). Now: the bytes are fetched again and published afresh."""
    cache = Cache(isolated_home / "weights")
    data = os.urandom(5_000)
    sha = hashlib.sha256(data).hexdigest()
    blob = _plant_old_unreferenced_blob(cache, data)
    url = weight_server.add("/race/published-then-pruned.bin", data)  # no hash: not a hit
    original = Cache.publish
    pruned: list[list[str]] = []

    def publish_then_prune(self: Cache, temp: Path, digest: str) -> Path:
        target = original(self, temp, digest)
        if not pruned:
            pruned.append(self.prune()["blobs"])
        return target

    monkeypatch.setattr(Cache, "publish", publish_then_prune)
    path = download_weights(url)
    assert pruned == [[str(blob)]]
    assert path == blob and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    ref = cache.ref(url)
    assert ref is not None and ref["sha256"] == sha
    assert cache.prune()["blobs"] == []  # referenced now
    assert path.is_file()
