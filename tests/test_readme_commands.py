"""Every command line README.md shows parses: a renamed command or option fails here, not in
a user's terminal. (What each command does is tested beside it; this checks the promise that
the README's commands exist as written.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from omnizoo.cli.main import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """The ``omnizoo ...`` lines of README's ```bash blocks, comments, ``[optional]`` parts
    and ``a | b | ...`` alternatives (the first kept) taken out."""
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if not line.startswith("omnizoo "):
                continue
            line = re.sub(r"\s*\[[^\]]*\]", "", line)
            line = line.split(" | ", 1)[0]  # `cache list | info | ...`: the first
            lines.append(line)
    return lines


def test_the_readme_shows_the_new_commands() -> None:
    words = {shlex.split(c)[1] for c in readme_commands()}
    assert {"validate", "benchmark", "finetune", "plot", "predict", "export"} <= words


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage error
        pytest.fail(f"README's `{command}` does not parse (exit {exc.code})")
