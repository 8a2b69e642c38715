"""A cache that cannot be turned against its user: planted refs and symlinks, a read-only
cache, and file modes that follow the umask.

Every attack test plants something inside ``OMNIZOO_HOME`` that points at a file outside it
(the "victim", mode 0600 so that a chmod shows) and checks the error or result, and that the
victim's bytes and mode are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnizoo import download_weights, settings
from omnizoo.cli.main import main
from omnizoo.errors import OfflineError
from omnizoo.weights.cache import Cache, url_key
from weightserver import WeightServer

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
NAME = f"/models/hard-{SHA[:8]}.pth"
HOST = socket.gethostname().replace(".", "_") or "host"  # as temp file names spell it
VICTIM_BYTES = b"a file of the user's, outside the cache; it must not change\n" * 50


@pytest.fixture
def fast(isolated_home: Path) -> Iterator[Path]:
    with settings.override(backoff=0.01, retries=2, read_timeout=5.0, connect_timeout=5.0):
        yield isolated_home


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM_BYTES)
    path.chmod(0o600)
    return path


def unchanged(path: Path) -> bool:
    st = os.lstat(path)
    return path.read_bytes() == VICTIM_BYTES and stat.S_IMODE(st.st_mode) == 0o600


def weights(home: Path) -> Path:
    return home / "weights"


def plant_ref(home: Path, url: str, digest: object, names: object = ()) -> Path:
    refs = weights(home) / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    path = refs / f"{url_key(url)}.json"
    ref = {"url": url, "sha256": digest, "filename": url.rsplit("/", 1)[-1], "names": names}
    path.write_text(json.dumps(ref))
    return path


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


# -- 1. refs accept only a 64-hex digest -----------------------------------------------------
def _traversal(victim: Path) -> list[str]:
    # blobs/sha256/<digest> with <digest> = ../../../../victim is tmp_path/victim
    return ["../../../../victim", str(victim)]


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_ref_digest_that_is_a_path_deletes_nothing_offline(
    fast: Path, victim: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the planted ref made an offline download_weights(url) delete the victim."""
    url = "https://example.org/models/planted.pth"
    digest = _traversal(victim)[kind == "absolute"]
    assert (weights(fast) / "blobs" / "sha256" / digest).resolve() == victim.resolve()
    ref = plant_ref(fast, url, digest)
    offline = settings.override(offline=True)
    refused = pytest.raises(OfflineError, match="not in the")
    with caplog.at_level(logging.WARNING, "omnizoo.weights"), offline, refused:
        download_weights(url)
    assert unchanged(victim)
    assert not ref.exists()  # the malformed ref was removed ...
    assert "ignoring malformed cache ref" in caplog.text  # ... with a warning


@pytest.mark.parametrize("digest", ["", ".", "..", "../../../../victim", "ABC"])
def test_bad_ref_digest_is_dropped_and_the_file_fetched_again(
    fast: Path, victim: Path, weight_server: WeightServer, digest: str
) -> None:
    """Before: '' or '.' gave a permanent IsADirectoryError; a path deleted the victim."""
    url = weight_server.add("/models/unhashed.bin", DATA)  # no hash prefix to filter with
    plant_ref(fast, url, digest)
    path = download_weights(url)
    assert path.read_bytes() == DATA and path.name == SHA
    assert download_weights(url) == path  # and it stays fixed
    assert Cache(weights(fast)).ref(url)["sha256"] == SHA  # type: ignore[index]
    assert unchanged(victim)


@pytest.mark.parametrize("target", ["url", "filename"])
def test_cache_remove_with_a_path_digest_deletes_nothing(
    fast: Path, victim: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """Before: `cache remove URL` chmod-ed and deleted the victim."""
    url = "https://example.org/models/planted.pth"
    plant_ref(fast, url, "../../../../victim")
    assert main(["cache", "remove", url if target == "url" else "planted.pth"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("omnizoo: error: not in the weights cache")
    assert unchanged(victim)


def test_ref_names_that_are_not_strings_do_not_crash_cache_list(
    fast: Path, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `cache list` died with a TypeError joining the names."""
    url = weight_server.add(NAME, DATA)
    download_weights(url)
    plant_ref(fast, url, SHA, names=[1, None, {"a": 1}, "cadene:x", ["y"]])
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert SHA[:12] in out and "cadene:x" in out
    assert main(["cache", "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["names"] == ["cadene:x"]
    plant_ref(fast, url, SHA, names="cadene:x")  # not even a list
    assert main(["cache", "info"]) == 0 and main(["cache", "list"]) == 0


# -- 2. nothing inside OMNIZOO_HOME follows a symlink ----------------------------------------
@pytest.mark.parametrize("ignore_range", [False, True], ids=["resume", "server-restarts"])
def test_symlink_planted_as_a_dead_partial_is_not_written_through(
    fast: Path, victim: Path, weight_server: WeightServer, ignore_range: bool
) -> None:
    """Before: the download adopted the link, appended to (or truncated) the victim, chmod-ed
    it 0444 and published the link as the blob."""
    url = weight_server.add(NAME, DATA, ignore_range=ignore_range)
    tmp = weights(fast) / "tmp"
    tmp.mkdir(parents=True)
    part = tmp / f"{url_key(url)}.{HOST}.{dead_pid()}.deadbeef.part"
    part.symlink_to(victim)
    info = {"url": url, "validator": '"v1"', "total": len(DATA)}
    Path(f"{part}.json").write_text(json.dumps(info))
    path = download_weights(url)
    assert path.read_bytes() == DATA and not path.is_symlink()
    assert unchanged(victim)
    assert not os.path.lexists(part)
    assert weight_server.route(url).range_requests == 0  # nothing was resumed from the link


def test_symlink_in_blobs_is_replaced_not_chmodded(
    fast: Path, victim: Path, weight_server: WeightServer
) -> None:
    """Before: the 'corrupted blob' clean-up chmod-ed the link's target 0644, then unlinked."""
    url = weight_server.add(NAME, DATA)
    blobs = weights(fast) / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / SHA).symlink_to(victim)
    path = download_weights(url, sha256=SHA)
    assert path == blobs / SHA and not path.is_symlink() and path.read_bytes() == DATA
    assert unchanged(victim)


def test_symlink_in_blobs_is_unlinked_by_prune_and_remove(
    fast: Path, victim: Path, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    blobs = weights(fast) / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    # prune: an unreferenced "blob" that is a link (old enough to be pruned)
    stray = blobs / ("e" * 64)
    stray.symlink_to(victim)
    hour_ago = time.time() - 3600 * 2
    os.utime(stray, (hour_ago, hour_ago), follow_symlinks=False)
    assert main(["cache", "prune"]) == 0
    assert f"deleted blobs: {stray}" in capsys.readouterr().out
    assert not os.path.lexists(stray) and unchanged(victim)
    # remove: a ref pointing at a blob that is a link
    url = "https://example.org/m/linked.pth"
    (blobs / SHA).symlink_to(victim)
    plant_ref(fast, url, SHA)
    assert main(["cache", "remove", url]) == 0
    assert not os.path.lexists(blobs / SHA) and unchanged(victim)


def test_symlinks_at_lock_meta_and_ref_paths_are_not_followed(
    fast: Path, victim: Path, weight_server: WeightServer
) -> None:
    url = weight_server.add(NAME, DATA)
    w = weights(fast)
    for sub in ("locks", "meta", "refs"):
        (w / sub).mkdir(parents=True)
    (w / "locks" / f"{url_key(url)}.lock").symlink_to(victim)
    (w / "meta" / f"{SHA}.json").symlink_to(victim)
    (w / "refs" / f"{url_key(url)}.json").symlink_to(victim)
    path = download_weights(url)
    assert path.read_bytes() == DATA
    assert unchanged(victim)
    assert not (w / "meta" / f"{SHA}.json").is_symlink()  # replaced by a real meta file
    assert not (w / "refs" / f"{url_key(url)}.json").is_symlink()


@pytest.mark.timeout(60)
def test_fifos_in_the_cache_do_not_block(fast: Path, weight_server: WeightServer) -> None:
    """A FIFO where a ref, a meta or a blob belongs: before, opening it blocked forever."""
    url = weight_server.add(NAME, DATA)
    w = weights(fast)
    for sub in ("refs", "meta", "blobs/sha256"):
        (w / sub).mkdir(parents=True)
    os.mkfifo(w / "refs" / f"{url_key(url)}.json")
    os.mkfifo(w / "meta" / f"{SHA}.json")
    os.mkfifo(w / "blobs" / "sha256" / SHA)
    path = download_weights(url, sha256=SHA)
    assert path.read_bytes() == DATA and stat.S_ISREG(os.lstat(path).st_mode)
    assert main(["cache", "verify"]) == 0


# -- 4. a read-only cache serves what it holds -----------------------------------------------
def _populate(home: Path, weight_server: WeightServer) -> tuple[str, str]:
    """A cache holding one file (plus a dead process's partial), as a user would copy it."""
    url = weight_server.add(NAME, DATA)
    with settings.override(home=home):
        download_weights(url)
    tmp = weights(home) / "tmp"
    (tmp / f"{'0' * 32}.{HOST}.{dead_pid()}.deadbeef.part").write_bytes(b"partial")
    return url, weight_server.url("/other/copy.pth")


def _check_read_only_cache(home: Path, url: str, other: str, capsys: pytest.CaptureFixture[str]):
    blob = weights(home) / "blobs" / "sha256" / SHA
    for offline in (True, False):
        with settings.override(home=home, offline=offline):
            assert download_weights(url) == blob  # re-hashed (copied: new mtime), not recorded
            assert download_weights(other, sha256=SHA) == blob  # a new URL: no ref written
    with settings.override(home=home):
        assert main(["cache", "verify"]) == 0
        assert "verified 1 file(s): 1 ok, 0 corrupted" in capsys.readouterr().out
        assert main(["cache", "list"]) == 0 and SHA[:12] in capsys.readouterr().out
        assert main(["cache", "prune"]) == 1  # the dead partial cannot be deleted: reported
        err = capsys.readouterr().err
        assert "omnizoo: error: cannot delete" in err and ".deadbeef.part" in err
        assert "Traceback" not in err
        assert main(["cache", "remove", SHA[:12]]) == 1
        err = capsys.readouterr().err
        assert err.startswith("omnizoo: error: ") and err.count("\n") == 1
    assert blob.read_bytes() == DATA


def test_read_only_mount_serves_what_it_holds(
    tmp_path: Path, weight_server: WeightServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: EROFS while writing the meta of a copied cache, even offline."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    src = tmp_path / "src-home"
    url, other = _populate(src, weight_server)
    mnt = tmp_path / "ro-home"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        # A copy as `cp -r` makes it: new mtimes, so every file is re-hashed on first use.
        shutil.copytree(src, mnt, dirs_exist_ok=True, copy_function=shutil.copy)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(OSError):
            (mnt / "probe").write_text("x")  # really read-only
        _check_read_only_cache(mnt, url, other, capsys)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


CHILD = """
import sys
from omnizoo import settings
from omnizoo import download_weights
from omnizoo.cli.main import main
home, url, other = sys.argv[1:4]
with settings.override(offline=True):
    print(download_weights(url))
    print(download_weights(other, sha256=sys.argv[4]))
print("verify", main(["cache", "verify"]), flush=True)
print("prune", main(["cache", "prune"]), flush=True)
"""


def test_chmod_read_only_cache_serves_what_it_holds(
    tmp_path: Path, weight_server: WeightServer
) -> None:
    """The same with permission bits (a cache of another user): meaningful for a non-root
    process, or for root with CAP_DAC_OVERRIDE dropped (setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores permission bits and setpriv is not there to drop that")
        drop = "-dac_override,-dac_read_search,-fowner"
        prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}"]
    home = tmp_path / "home"
    url, other = _populate(home, weight_server)
    for path in sorted(home.rglob("*"), reverse=True):
        if path.is_dir():
            path.chmod(0o555)
        else:
            path.chmod(0o444)
    try:
        env = dict(os.environ, OMNIZOO_HOME=str(home), OMNIZOO_PROGRESS="0")
        done = subprocess.run(
            [*prefix, sys.executable, "-c", CHILD, str(home), url, other, SHA],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for path in home.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
    blob = str(weights(home) / "blobs" / "sha256" / SHA)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[:2] == [blob, blob], done.stderr  # served, offline, with nothing written
    assert "verified 1 file(s): 1 ok, 0 corrupted" in out and "verify 0" in out
    assert "prune 1" in out  # the dead partial could not be deleted: reported, exit 1
    assert "Permission denied" in done.stderr and "Traceback" not in done.stderr


# -- 6. files respect the umask --------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_cache_and_index_files_follow_the_umask(
    fast: Path, weight_server: WeightServer, umask: int
) -> None:
    """Before: card index files were 0600 whatever the umask (tempfile.mkstemp), and blobs
    0444 even under umask 077."""
    from omnizoo.registry.index import _write_atomic

    url = weight_server.add(NAME, DATA)
    old = os.umask(umask)
    try:
        download_weights(url)
        index = fast / "index" / "timm-test.json"
        _write_atomic(index, {"key": "k"})
    finally:
        os.umask(old)
    file_mode = 0o666 & ~umask
    w = weights(fast)

    def mode(p: Path) -> int:
        return stat.S_IMODE(os.lstat(p).st_mode)

    assert mode(w / "blobs" / "sha256" / SHA) == file_mode & 0o444  # read-only, readable
    assert mode(w / "meta" / f"{SHA}.json") == file_mode
    assert mode(w / "refs" / f"{url_key(url)}.json") == file_mode
    assert mode(w / "locks" / f"{url_key(url)}.lock") == file_mode
    assert mode(index) == file_mode
    for d in ("blobs", "blobs/sha256", "meta", "refs", "tmp", "locks"):
        assert mode(w / d) == 0o777 & ~umask, d
