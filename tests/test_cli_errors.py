"""The command line's error contract, through the real entry point (a subprocess): one line
per error (``omnizoo: error: <message>``), a traceback only with ``--debug``, exit 1 for
runtime errors (OSErrors included) and 2 for usage errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omnizoo.weights.cache import Cache


def omnizoo(
    home: Path, *argv: str, prefix: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, OMNIZOO_HOME=str(home), OMNIZOO_PROGRESS="0", **env)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "omnizoo.cli.main", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_runtime_error_is_one_line_and_exit_1(isolated_home: Path) -> None:
    """Before: exit 2 (the usage-error code) and an 'omnizoo download: error:' prefix."""
    url = "http://127.0.0.1:9/models/gone-abcdef12.pth"  # nothing listens on port 9
    done = omnizoo(isolated_home, "download", url, OMNIZOO_RETRIES="1")
    assert done.returncode == 1
    assert done.stderr.startswith(f"omnizoo: error: {url}: giving up after 1 attempt(s)")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_debug_shows_the_traceback(isolated_home: Path) -> None:
    url = "http://127.0.0.1:9/models/gone-abcdef12.pth"
    done = omnizoo(isolated_home, "--debug", "download", url, OMNIZOO_RETRIES="1")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"omnizoo: error: {url}: giving up")


def test_bad_setting_is_a_runtime_error_naming_it(isolated_home: Path) -> None:
    done = omnizoo(isolated_home, "cache", "info", OMNIZOO_RETRIES="1e9")
    assert done.returncode == 1
    assert done.stderr == (
        "omnizoo: error: OMNIZOO_RETRIES='1e9' is out of range "
        "(allowed: an integer from 1 to 100)\n"
    )


def test_usage_error_is_exit_2(isolated_home: Path) -> None:
    done = omnizoo(isolated_home, "cache", "frobnicate")
    assert done.returncode == 2
    assert "usage: omnizoo cache" in done.stderr and "invalid choice: 'frobnicate'" in done.stderr


def test_permission_denied_is_one_line_and_exit_1(isolated_home: Path) -> None:
    """An OSError outside omnizoo's own errors (a cache another user owns). Before: a
    PermissionError traceback."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root ignores permission bits unless the capability is dropped
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and setpriv is not there to drop CAP_DAC_OVERRIDE")
        drop = "-dac_override,-dac_read_search,-fowner"
        prefix = (setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}")
    cache = Cache(isolated_home / "weights")
    cache.ensure()
    data = b"weights" * 100
    sha = hashlib.sha256(data).hexdigest()
    cache.blob_path(sha).write_bytes(data)
    cache.add_ref("https://example.org/m/w.pth", sha)
    cache.refs.chmod(0o555)
    try:
        done = omnizoo(isolated_home, "cache", "remove", sha[:12], prefix=prefix)
    finally:
        cache.refs.chmod(0o755)
    ref = next(cache.refs.glob("*.json"))
    assert done.returncode == 1
    assert done.stderr == f"omnizoo: error: Permission denied: {ref}\n"
    assert ref.exists() and cache.blob_path(sha).exists()
