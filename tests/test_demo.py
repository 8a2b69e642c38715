"""`make demo`: real pretrained weights give real answers, offline, quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lite0_weights import CAT_CLASSES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import demo  # noqa: E402


def test_demo_main_predicts_the_cat_and_the_coffee() -> None:
    results = demo.main(quiet=True)
    names = [p.name for p in demo.IMAGES]
    assert not results.errors
    by_name = dict(zip(names, results, strict=True))
    assert by_name["cat.jpg"][0].label in CAT_CLASSES
    assert sum(p.score for p in by_name["cat.jpg"] if p.label in CAT_CLASSES) > 0.8
    assert by_name["coffee.jpg"][0].label == "espresso"
    assert by_name["rocket.jpg"][0].label in {
        "missile",
        "projectile",
        "space shuttle",
        "drilling platform",
    }


def test_demo_script_runs_offline_in_well_under_a_minute(tmp_path: Path) -> None:
    """A fresh OMNIZOO_HOME (so the card index is built too), OMNIZOO_OFFLINE=1.

    The budget is on CPU time (user + sys of the child): wall time on a shared two-core
    machine measures the neighbours as much as the demo.
    """
    import resource

    env = dict(os.environ, OMNIZOO_OFFLINE="1", OMNIZOO_HOME=str(tmp_path / "home"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stderr
    assert "cat.jpg" in proc.stdout and "espresso" in proc.stdout
    assert cpu < 30, f"demo used {cpu:.1f} s of CPU ({wall:.1f} s wall)"
