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
    env = dict(os.environ, OMNIZOO_OFFLINE="1", OMNIZOO_HOME=str(tmp_path / "home"))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "cat.jpg" in proc.stdout and "espresso" in proc.stdout
    assert elapsed < 60, f"demo took {elapsed:.1f} s"
