"""Print pip constraints that pin every declared lower bound of pyproject.toml exactly.

    python scripts/lower_bounds.py > constraints.txt
    pip install -c constraints.txt -e ".[all,dev]"

Why: the lower bounds are promised to be the versions the tests run against
(tests/test_packaging.py); `make venv` installs with these constraints, so a fresh clone runs
the suite on exactly them rather than on whatever is newest on PyPI that day.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for name, values in project["optional-dependencies"].items():
        if name != "all":
            specs += values
    pins: dict[str, str] = {}
    for spec in specs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([\w.]+)", spec)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
