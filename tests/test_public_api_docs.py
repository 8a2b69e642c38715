"""Every public callable (``omnizoo.__all__``) documents an example and what it raises.

The policy, held here: each function and class in ``omnizoo.__all__`` has a docstring with an
example (``>>> ``) and a Google-style ``Raises:`` section. Each entry of that section names an
exception class of :mod:`omnizoo.errors` (or a builtin); a callable that raises nothing of its
own says so with a ``Nothing:`` entry (the plain records: LoadReport, Prediction, ModelCard,
WeightsFile, Resolution, and ``trainable_summary``). The exception classes themselves are
exempt: :mod:`omnizoo.errors` documents them and their hierarchy.
"""

from __future__ import annotations

import builtins
import inspect
import re

import pytest

import omnizoo
import omnizoo.errors


def _public_callables() -> list[str]:
    out = []
    for name in omnizoo.__all__:
        obj = getattr(omnizoo, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            continue
        if callable(obj):
            out.append(name)
    return out


def _raises_section(doc: str) -> str | None:
    """The text of the ``Raises:`` section (up to the next unindented line), or None."""
    match = re.search(r"^Raises:\n((?:(?: {4}.*)?\n?)+)", doc, re.MULTILINE)
    return match.group(1) if match else None


def _named(section: str) -> list[str]:
    names = []
    for line in section.splitlines():
        match = re.match(r"^ {4}(\w+(?:, \w+)*):", line)
        if match:
            names += match.group(1).split(", ")
    return names


def test_the_policy_covers_the_callables() -> None:
    names = _public_callables()
    assert "create_model" in names and "Predictor" in names and len(names) >= 25, names


@pytest.mark.parametrize("name", _public_callables())
def test_public_callable_has_an_example_and_raises(name: str) -> None:
    doc = inspect.getdoc(getattr(omnizoo, name)) or ""
    assert ">>> " in doc, f"omnizoo.{name}: its docstring has no example (>>> )"
    section = _raises_section(doc)
    assert section, f"omnizoo.{name}: its docstring has no 'Raises:' section (or 'Nothing:')"
    named = _named(section)
    assert named, f"omnizoo.{name}: its Raises: section names no exception:\n{section}"
    for exc in named:
        if exc == "Nothing":
            assert named == ["Nothing"], f"omnizoo.{name}: 'Nothing' and {named}"
            continue
        cls = getattr(omnizoo.errors, exc, None) or getattr(builtins, exc, None)
        assert isinstance(cls, type) and issubclass(cls, BaseException), (
            f"omnizoo.{name}: Raises: names {exc}, which is not an exception of omnizoo.errors"
        )


def test_the_checker_sees_a_missing_section() -> None:
    assert _raises_section("Do it.\n\n>>> f()\n") is None
    assert _named("    ConfigurationError: bad.\n        more.\n    Nothing: x\n") == [
        "ConfigurationError",
        "Nothing",
    ]
