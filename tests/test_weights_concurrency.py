"""Real processes against one cache: one body download for many callers, SIGKILL safety,
and waiters that never block forever on a dead or stuck lock holder."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omnizoo import download_weights, settings
from omnizoo.weights.cache import Cache
from weightserver import WeightServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

DATA = os.urandom(4_000_000)
# Where the server pauses; the client writes in ~1 MiB batches, so its partial file holds at
# least WRITTEN bytes during the pause.
PAUSE_AT, WRITTEN = 3_000_000, 2_000_000
SHA = hashlib.sha256(DATA).hexdigest()
NAME = f"/models/conc-{SHA[:8]}.pth"

# A child: import everything, say it is ready, wait for "go", download, print the path.
CHILD = """
import os, sys, time
from pathlib import Path
from omnizoo import download_weights
url, ready, go = sys.argv[1:4]
Path(ready).touch()
while go != "-" and not os.path.exists(go):
    time.sleep(0.005)
print(download_weights(url), flush=True)
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMNIZOO_HOME=str(home), OMNIZOO_PROGRESS="0", OMNIZOO_BACKOFF="0.01", **extra)
    return env


def _spawn(
    url: str, home: Path, tmp: Path, tag: str, go: str = "-", **extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(tmp / f"ready-{tag}"), go],
        env=_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def _partials(home: Path) -> list[Path]:
    tmp = home / "weights" / "tmp"
    return sorted(tmp.glob("*.part")) if tmp.is_dir() else []


def test_many_processes_one_download(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    # The body pauses half-way so that every process is surely waiting while it downloads.
    url = weight_server.add(NAME, DATA, pause_at=len(DATA) // 2, pause=0.5)
    go = tmp_path / "go"
    n = 6
    children = [_spawn(url, isolated_home, tmp_path, str(i), str(go)) for i in range(n)]
    _wait_for(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(n)))
    go.touch()
    outputs = [c.communicate(timeout=60) for c in children]
    assert [c.returncode for c in children] == [0] * n, [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert paths == {str(isolated_home / "weights" / "blobs" / "sha256" / SHA)}
    route = weight_server.route(url)
    assert route.bodies == 1 and route.requests == 1  # the others read the verified file
    assert Path(paths.pop()).read_bytes() == DATA
    assert _partials(isolated_home) == []


def test_sigkill_mid_download_leaves_nothing_mistaken_for_good(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    url = weight_server.add(NAME, DATA, pause_at=PAUSE_AT, pause=10.0)
    victim = _spawn(url, isolated_home, tmp_path, "victim")
    _wait_for(lambda: any(p.stat().st_size >= WRITTEN for p in _partials(isolated_home)))
    # A second process is now waiting for the victim's lock.
    waiter = _spawn(url, isolated_home, tmp_path, "waiter")
    _wait_for(lambda: (tmp_path / "ready-waiter").exists())
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    # The victim stays a zombie (killed, not reaped) for a moment, as under a busy parent: the
    # waiter gets the released lock meanwhile and must still see the victim as dead.
    time.sleep(0.5)
    victim.wait(timeout=10)
    weight_server.route(url).pause = 0.0
    blob = isolated_home / "weights" / "blobs" / "sha256" / SHA
    # The waiter takes over at once (the kernel released the dead holder's lock) and finishes.
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.strip() == str(blob)
    assert blob.read_bytes() == DATA
    # The waiter adopted the victim's partial file (re-hashing what was on disk) and resumed it
    # with a Range request; nothing of it is left over.
    assert _partials(isolated_home) == []
    route = weight_server.route(url)
    assert (route.bodies, route.range_requests) == (1, 1)
    assert Cache(isolated_home / "weights").verify() == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_but_unreaped_process_counts_as_dead() -> None:
    """Between SIGKILL and its parent's wait() a process is a zombie: kill(pid, 0) still
    succeeds, but its lock is gone and its partial file is a leftover to adopt."""
    from omnizoo.weights.processes import pid_alive as _pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _pid_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        _wait_for(lambda: not _pid_alive(child.pid), timeout=10)
        os.kill(child.pid, 0)  # not reaped yet: the PID still exists
    finally:
        child.kill()
        child.wait()
    assert not _pid_alive(child.pid)
    assert _pid_alive(os.getpid())


def test_sigkill_leftover_is_never_served(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    url = weight_server.add(NAME, DATA, pause_at=PAUSE_AT, pause=10.0)
    victim = _spawn(url, isolated_home, tmp_path, "victim")
    _wait_for(lambda: any(p.stat().st_size >= WRITTEN for p in _partials(isolated_home)))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    leftovers = _partials(isolated_home)
    assert len(leftovers) == 1
    assert not (isolated_home / "weights" / "blobs" / "sha256" / SHA).exists()
    assert Cache(isolated_home / "weights").is_leftover(leftovers[0])
    # Offline, the partial is not a cache entry.
    from omnizoo.errors import OfflineError

    with settings.override(offline=True), pytest.raises(OfflineError):
        download_weights(url)
    route = weight_server.route(url)
    route.pause = 0.0
    assert download_weights(url).read_bytes() == DATA
    assert _partials(isolated_home) == []
    assert (route.bodies, route.range_requests) == (1, 1)  # resumed, not restarted


def test_corrupted_leftover_is_caught_by_the_hash(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    """A dead process's partial whose bytes went bad: the resumed file fails the hash check,
    and one clean download from byte 0 replaces it."""
    url = weight_server.add(NAME, DATA, pause_at=PAUSE_AT, pause=10.0)
    victim = _spawn(url, isolated_home, tmp_path, "victim")
    _wait_for(lambda: any(p.stat().st_size >= WRITTEN for p in _partials(isolated_home)))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    (leftover,) = _partials(isolated_home)
    with open(leftover, "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    route = weight_server.route(url)
    route.pause = 0.0
    assert download_weights(url).read_bytes() == DATA
    assert (route.bodies, route.range_requests) == (2, 1)
    assert _partials(isolated_home) == []


def test_leftover_without_validator_is_not_resumed(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    url = weight_server.add(NAME, DATA, pause_at=PAUSE_AT, pause=10.0, etag=None)
    victim = _spawn(url, isolated_home, tmp_path, "victim")
    _wait_for(lambda: any(p.stat().st_size >= WRITTEN for p in _partials(isolated_home)))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    route = weight_server.route(url)
    route.pause = 0.0
    assert download_weights(url).read_bytes() == DATA
    assert (route.bodies, route.range_requests) == (2, 0)  # no ETag: a clean restart
    assert _partials(isolated_home) == []


@pytest.mark.timeout(120)  # bounds a hang only: the lock holder is stopped, not slow
def test_stuck_lock_holder_does_not_block_forever(
    isolated_home: Path, weight_server: WeightServer, tmp_path: Path
) -> None:
    url = weight_server.add(NAME, DATA, pause_at=PAUSE_AT, pause=10.0)
    holder = _spawn(url, isolated_home, tmp_path, "holder")
    try:
        _wait_for(lambda: any(p.stat().st_size >= WRITTEN for p in _partials(isolated_home)))
        holder.send_signal(signal.SIGSTOP)  # alive, holding the lock, making no progress
        weight_server.route(url).pause = 0.0
        with settings.override(read_timeout=0.3, connect_timeout=0.3, retries=2, backoff=0.01):
            path = download_weights(url)  # a block forever is caught by the timeout mark
        assert path.read_bytes() == DATA
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)


@pytest.mark.timeout(120)  # bounds a hang only
def test_filesystem_without_flock_uses_a_lock_file(
    isolated_home: Path, weight_server: WeightServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where flock is not supported, a SoftFileLock is used; a stale one left by a dead
    process is broken by the no-progress rule instead of blocking forever."""
    import filelock

    class NoFlock(filelock.FileLock):  # type: ignore[misc,valid-type]
        def _acquire(self) -> None:
            raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(filelock, "FileLock", NoFlock)
    url = weight_server.add(NAME, DATA)
    from omnizoo.weights.cache import url_key

    locks = isolated_home / "weights" / "locks"
    locks.mkdir(parents=True)
    stale = locks / f"{url_key(url)}.lock.soft"
    stale.write_text("12345")  # left by a process that died holding it
    with settings.override(read_timeout=0.3, connect_timeout=0.3, retries=2, backoff=0.01):
        assert download_weights(url).read_bytes() == DATA
    assert weight_server.route(url).bodies == 1
    assert not stale.exists()  # released after the download
