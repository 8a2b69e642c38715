"""Print pip constraints that pin every declared lower bound of pyproject.toml exactly.

    python scripts/lower_bounds.py > constraints.txt
    pip install -c constraints.txt -e ".[all,dev]"

Why: each lower bound is a promise that omnizoo works on that version. `make test-oldest`
installs a separate venv (.venv-oldest) with these constraints and runs the suite there, so
every floor is tested, not guessed; `make test` (what CI runs) installs the newest releases
instead. tests/test_packaging.py checks that this output and pyproject agree and, run inside
.venv-oldest, that every package there is exactly at its bound.

A package named in several extras must have one bound everywhere (two would make the
constraints ambiguous): this exits 1 naming it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]

#: ``name[extras] >= version`` (the extras and anything after the version are ignored).
_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([\w.]+)")


def normalize(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lower_bounds(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Normalised name -> its declared lower bound, over the core and every extra but
    ``all`` (which only names the others). Raises ValueError on two bounds for one name."""
    project = tomllib.loads(pyproject.read_text())["project"]
    specs = list(project["dependencies"])
    for name, values in project["optional-dependencies"].items():
        if name != "all":
            specs += values
    pins: dict[str, str] = {}
    for spec in specs:
        m = _SPEC.match(spec)
        if m:
            name, version = normalize(m.group(1)), m.group(2)
            if pins.setdefault(name, version) != version:
                raise ValueError(f"{name}: two lower bounds ({pins[name]} and {version})")
    return dict(sorted(pins.items()))


def main() -> int:
    try:
        pins = lower_bounds()
    except ValueError as exc:
        print(f"pyproject.toml: {exc}; give it one bound", file=sys.stderr)
        return 1
    for name, version in pins.items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
