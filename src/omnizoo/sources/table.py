"""The one table of model sources: each name, where its adapter class lives, and (by its
position) the default order in which a bare model name is resolved.

The table is the five built-in sources, then the sources third-party packages declare in the
``omnizoo.sources`` entry-point group (name = the source prefix, value = ``"module:Class"`` of
a :class:`~omnizoo.sources.base.SourceAdapter`; sorted by name), then ``user``, where
:func:`omnizoo.register_model` puts a user's own models. See docs/adding-a-source.md.

>>> source_names()[:5]
('torchvision', 'timm', 'cadene', 'efficientnet', 'onnx')
>>> source_names()[-1]
'user'
>>> adapter_path("timm")
'omnizoo.sources.timm.adapter:TimmSource'
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from ..errors import ConfigurationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "SOURCES",
    "USER_SOURCE",
    "adapter_path",
    "entry_point_sources",
    "refresh",
    "resolution_order",
    "source_names",
    "sources",
]

#: The built-in sources: name -> "module:Class" of its
#: :class:`~omnizoo.sources.base.SourceAdapter`, in the default resolution order
#: (``OMNIZOO_SOURCE_ORDER`` reorders the whole table).
SOURCES: dict[str, str] = {
    "torchvision": "omnizoo.sources.torchvision.adapter:TorchvisionSource",
    "timm": "omnizoo.sources.timm.adapter:TimmSource",
    "cadene": "omnizoo.sources.cadene.adapter:CadeneSource",
    "efficientnet": "omnizoo.sources.efficientnet.adapter:EfficientNetSource",
    "onnx": "omnizoo.sources.onnx.adapter:OnnxZooSource",
}
#: The source of models registered in this process with :func:`omnizoo.register_model`.
USER_SOURCE = "user"
_USER_ADAPTER = "omnizoo.sources.user:UserSource"
#: The entry-point group through which an installed package adds a source.
ENTRY_POINT_GROUP = "omnizoo.sources"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VALUE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_lock = threading.Lock()
_table: dict[str, str] | None = None


def sources() -> dict[str, str]:
    """The whole table, name -> ``"module:Class"``, in the default resolution order (read once
    per process; :func:`refresh` reads the entry points again)."""
    global _table
    table = _table
    if table is None:
        with _lock:
            if _table is None:
                merged = dict(SOURCES)
                for name, value in entry_point_sources().items():
                    if name in merged or name == USER_SOURCE:
                        warnings.warn(
                            f"omnizoo: the {ENTRY_POINT_GROUP} entry point {name!r} ({value}) "
                            "is ignored: that source name is omnizoo's own",
                            stacklevel=3,
                        )
                        continue
                    merged[name] = value
                merged[USER_SOURCE] = _USER_ADAPTER
                _table = merged
            table = _table
    return table


def refresh() -> None:
    """Forget the table, so that the next use reads the entry points again (after installing
    a source package into a running process; tests)."""
    global _table
    with _lock:
        _table = None


def source_names() -> tuple[str, ...]:
    """Every source, in the default resolution order."""
    return tuple(sources())


def adapter_path(source: str) -> str | None:
    """``"module:Class"`` of ``source``'s adapter, or None when there is no such source."""
    return sources().get(source)


def resolution_order(preferred: Sequence[str] = ()) -> tuple[str, ...]:
    """``preferred`` sources first (``OMNIZOO_SOURCE_ORDER``), then the rest in table order.

    >>> resolution_order(("timm",))[:2]
    ('timm', 'torchvision')
    """
    table = sources()
    unknown = [s for s in preferred if s not in table]
    if unknown:
        raise ConfigurationError(
            f"OMNIZOO_SOURCE_ORDER names unknown source(s) {unknown}; "
            f"choose from {', '.join(table)}"
        )
    named = tuple(dict.fromkeys(preferred))
    return named + tuple(s for s in table if s not in named)


def entry_point_sources(group: str = ENTRY_POINT_GROUP) -> dict[str, str]:
    """The sources installed packages declare in ``group``: name -> ``"module:Class"``,
    sorted by name.

    Read from the ``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` folder on
    ``sys.path``, the files ``importlib.metadata.entry_points`` reads, without its import cost
    (~70 ms, more than the rest of a fresh ``list_models()``). As there, the first distribution
    of a name on ``sys.path`` wins. Malformed names or values are skipped with a warning.
    """
    found: dict[str, str] = {}
    for dist, text in _entry_point_files():
        for name, value in _section(text, group):
            if not _NAME_RE.match(name) or not _VALUE_RE.match(value):
                warnings.warn(
                    f"omnizoo: {dist}: the {group} entry point {name!r} = {value!r} is not "
                    "'<source name> = <module>:<SourceAdapter class>'; ignored",
                    stacklevel=4,
                )
                continue
            found.setdefault(name, value)
    return dict(sorted(found.items()))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_point_files() -> Iterator[tuple[str, str]]:
    """(distribution folder, text of its entry_points.txt) for each distribution on sys.path."""
    seen: set[str] = set()
    for entry in sys.path:
        directory = entry or "."
        try:
            names = sorted(os.listdir(directory))
        except (OSError, TypeError):
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            dist = _normalise(name[: name.rindex(".")].partition("-")[0])
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            yield name, text


def _section(text: str, group: str) -> Iterator[tuple[str, str]]:
    """``name = value`` pairs of one ``[group]`` of an entry_points.txt (an ini file)."""
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # "module:Class [extra]": extras ignored
            yield name.strip(), value
