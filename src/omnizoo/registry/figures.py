"""Parameter counts and GFLOPs no source publishes, counted when asked, once per machine.

Building a card index counts nothing (it costs about what ``timm.list_models()`` does): a card
lacking a figure takes it from the prebuilt indexes shipped for the pinned library versions
where they counted the same build (:func:`omnizoo.registry.index_build.reuse_shipped`), else
the index lists it as ``pending``. A pending card gets its figures when asked (a card shown,
a sort or filter on ``params``/``gflops``, ``compare``): from the figure cache beside the
index, ``<index key>.figures.json`` (:mod:`omnizoo.sources.figure_cache`: validated on read,
written atomically, keyed by the index key), else counted on the meta device
(:func:`omnizoo.sources.param_flops.count_figures`) and saved there (:class:`FigureCache`).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sources.figure_cache import figure_name, read_figures, write_figures
from ..sources.param_flops import Figure, apply_figure, stats_key
from ..values.card import ModelCard

if TYPE_CHECKING:
    from ..sources.base import SourceAdapter

__all__ = ["ANNOUNCE_AFTER_S", "FigureCache"]

#: Counting a sort or filter over many cards can take minutes: it is announced on stderr once
#: it has run this long (a single card takes a fraction of a second and says nothing).
ANNOUNCE_AFTER_S = 2.0


class FigureCache:
    """The counted figures of one index key: read from ``path`` once, counted for what is
    asked and not there, and saved back (``path`` None: this process's memory only)."""

    def __init__(self, adapter: SourceAdapter, key: str, path: Path | None) -> None:
        self.adapter, self.key, self.path = adapter, key, path
        self._known: dict[str, Figure] | None = None
        self._lock = threading.Lock()

    def fill(self, cards: Sequence[ModelCard]) -> list[ModelCard]:
        """``cards`` with the figures they lack, from this cache or counted (and saved)."""
        with self._lock:
            known = self._load()
            todo = [c for c in cards if figure_name(stats_key(c)) not in known]
            if todo:
                where = "memory" if self.path is None else self.path
                counted = _count(self.adapter, todo, f"once per machine, kept in {where}")
                fresh = {figure_name(k): v for k, v in counted.items()}
                known.update(fresh)
                self._save(fresh)
            return [apply_figure(c, known[figure_name(stats_key(c))]) for c in cards]

    def _load(self) -> dict[str, Figure]:
        if self._known is None:
            self._known = self._read(warn=True)
        return self._known

    def _read(self, *, warn: bool) -> dict[str, Figure]:
        """The file's figures; {} when there is none, and when it is damaged, planted or of
        another key (then it is not trusted, and the next save replaces it)."""
        if self.path is None:
            return {}
        figures, problem = read_figures(self.path, self.key)
        if problem is not None and warn:
            warnings.warn(
                f"omnizoo: the figure cache {self.path} is not usable ({problem}); "
                "its figures are counted again and the file replaced",
                stacklevel=5,
            )
        return figures

    def _save(self, fresh: dict[str, Figure]) -> None:
        """Add ``fresh`` to the file (re-read first: another process may have added some)."""
        if self.path is None:
            return
        try:
            write_figures(self.path, self.key, {**self._read(warn=False), **fresh})
        except OSError as exc:  # a read-only home: the figures stay in this process
            warnings.warn(
                f"omnizoo: cannot write the figure cache {self.path}: {exc}", stacklevel=2
            )


def _count(
    adapter: SourceAdapter, cards: Sequence[ModelCard], why: str
) -> dict[tuple[Any, ...], Figure]:
    """Count ``cards`` on the meta device, announcing it on stderr when it takes long
    (``OMNIZOO_PROGRESS=0`` silences it); torch's and numpy's random states are kept."""
    from ..settings import get_settings
    from ..sources.param_flops import count_figures
    from .index_build import rng_untouched

    stream = None if get_settings().progress is False else sys.stderr
    with rng_untouched():
        return count_figures(
            adapter, cards, stream=stream, announce_after=ANNOUNCE_AFTER_S, why=why
        )
