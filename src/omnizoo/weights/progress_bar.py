"""Whether to draw a progress bar, and the bar: ``tqdm.auto`` (a widget in Jupyter, text on a
terminal), for downloads and for prediction runs alike.

A terminal gets a bar; so does a Jupyter kernel, whose stderr is no terminal but shows
``tqdm.auto``'s bars (a widget with ipywidgets, else tqdm's text bar in the cell output).
Anything else (a log file, a pipe, CI, a test's captured stream) gets no bar: downloads stay
quiet, prediction runs print a line every N images (:mod:`omnizoo.inference.progress`).

>>> import io
>>> bar_wanted(io.StringIO(), notebook=True), bar_wanted(io.StringIO(), True)
(False, True)
"""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["bar_wanted", "in_notebook", "make_bar"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's kernel shell is running). IPython
    is never imported here: a process that did not import it runs no kernel."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # a half-initialised IPython: no kernel to draw in
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def bar_wanted(
    stream: IO[str] | Any, setting: bool | None = None, *, notebook: bool | None = None
) -> bool:
    """Whether to draw a bar on ``stream``: ``setting`` when given (``OMNIZOO_PROGRESS``, a
    ``progress=`` argument), else when ``stream`` is a terminal, or the process's own
    stderr/stdout in a Jupyter kernel (``notebook``: None asks :func:`in_notebook`)."""
    if setting is not None:
        return bool(setting)
    if bool(getattr(stream, "isatty", lambda: False)()):
        return True
    if stream is not sys.stderr and stream is not sys.stdout:
        return False
    return in_notebook() if notebook is None else notebook


def make_bar(stream: IO[str] | Any, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar writing to ``stream`` (a widget in Jupyter, text elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(file=stream, **kwargs)
