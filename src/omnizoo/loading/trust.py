"""Loading a trusted local training checkpoint: ``trust=`` names the Python objects (globals)
``torch.load(weights_only=True)`` may build besides tensors, and nothing else.

A timm ``train.py`` checkpoint is a dict of ``state_dict``, ``optimizer``, ``epoch``, ``arch``,
``version`` and ``args``: the ``argparse.Namespace`` of the run, pickled. torch's
``weights_only=True`` loader refuses that Namespace (rightly: a pickle can name any callable).
Rather than unpickling everything (``weights_only=False``), the caller names the globals it
trusts and they are allowed for this one load, with
:func:`torch.serialization.safe_globals` under ``weights_only=True``::

    create_model("timm:resnet50", checkpoint_path="output/train/model_best.pth.tar",
                 trust=["argparse.Namespace"])
    omnizoo predict timm:resnet50 cat.jpg --checkpoint model_best.pth.tar \\
        --trust argparse.Namespace

A name is ``module.QualifiedName`` (or the object itself). Names from modules that reach the
operating system or the interpreter (``os``, ``subprocess``, ``builtins``, ...) are refused
whatever the caller says: allowing ``builtins.exec`` would be ``weights_only=False`` by
another name. The refusal of a checkpoint names every global it needs
(:func:`torch.serialization.get_unsafe_globals_in_checkpoint`, a scan that runs nothing) and the
exact ``trust=[...]`` that loads it (:func:`refusal_hint`).

>>> import argparse
>>> trusted_globals(["argparse.Namespace"]) == (argparse.Namespace,)
True
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = ["DENIED_MODULES", "refusal_hint", "refused_globals", "trusted_globals"]

#: Module roots whose globals are never trusted: calling them (as unpickling does) can run
#: commands, code or imports, or touch files and sockets.
DENIED_MODULES = frozenset(
    {
        "builtins",
        "code",
        "codecs",
        "ctypes",
        "importlib",
        "marshal",
        "nt",
        "os",
        "pickle",
        "posix",
        "pty",
        "runpy",
        "shutil",
        "socket",
        "subprocess",
        "sys",
        "torch.hub",
        "types",
        "webbrowser",
    }
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_REFUSED = re.compile(r"GLOBAL ([A-Za-z_][\w.]*) was not an allowed global")


def _denied(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in DENIED_MODULES)


def _resolve(name: str) -> Any:
    """The object ``module.Qualified.Name`` names (the longest importable module prefix)."""
    text = name.strip()
    if not _NAME.match(text):
        raise ConfigurationError(
            f"trust={name!r}: give a global as 'module.Name', e.g. 'argparse.Namespace'"
        )
    parts = text.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        if _denied(module_name):
            raise _never(name, text)
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigurationError(
        f"trust={name!r}: no such importable global (give 'module.Name' of an installed module, "
        "e.g. 'argparse.Namespace')"
    )


def _never(item: Any, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"trust={item!r}: {what} can run code when a checkpoint calls it; omnizoo never allows "
        "it (re-save the checkpoint as a plain state dict)"
    )


def _full_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def trusted_globals(trust: Iterable[Any] | str | None) -> tuple[Any, ...]:
    """The objects a ``trust=`` argument allows: each item a ``"module.Name"`` string or the
    object itself; a single string counts as one name.

    Raises:
        ConfigurationError: a name that does not resolve, or a global from a module that can
            run code (:data:`DENIED_MODULES`).
    """
    if trust is None:
        return ()
    items = [trust] if isinstance(trust, str) else list(trust)
    out: list[Any] = []
    for item in items:
        obj = _resolve(item) if isinstance(item, str) else item
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not hasattr(obj, "__qualname__"):
            raise ConfigurationError(
                f"trust={item!r}: give a class or function (or its 'module.Name'), not "
                f"{type(obj).__name__}"
            )
        if _denied(module) or (isinstance(item, str) and _denied(item.rsplit(".", 1)[0])):
            raise _never(item, _full_name(obj))
        if obj not in out:
            out.append(obj)
    return tuple(out)


def refused_globals(path: Path, reason: str) -> list[str]:
    """Every global ``weights_only=True`` refuses in the file at ``path`` (a pickle-opcode
    scan of a torch.save zip that runs nothing); for other files the one torch named."""
    found: list[str] = []
    try:
        from torch.serialization import get_unsafe_globals_in_checkpoint

        found = list(get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) files, an older torch: torch's own message
        pass
    if not found:
        found = _REFUSED.findall(reason)
    return sorted(dict.fromkeys(found))


def refusal_hint(path: Path, refused: list[str], trusted: tuple[Any, ...]) -> str:
    """What to do about a checkpoint whose ``refused`` globals ``weights_only=True`` will not
    build: the exact ``trust=[...]`` (and ``--trust``) that loads it, or why none does."""
    if not refused:
        return "re-save the checkpoint as a plain state dict / safetensors"
    wanted = sorted(set(refused) | {_full_name(t) for t in trusted})
    denied = [g for g in refused if _denied(g.rsplit(".", 1)[0])]
    if denied:
        return (
            f"{', '.join(denied)} can run code when the file is loaded, so no trust= allows it: "
            "do not load this file unless you made it, and re-save it as a plain state dict / "
            "safetensors"
        )
    flags = " ".join(f"--trust {g}" for g in wanted)
    return (
        f"If this is your own training checkpoint (a timm train.py checkpoint pickles its "
        f"argparse.Namespace under 'args'), allow exactly these globals: "
        f"create_model(..., checkpoint_path={str(path)!r}, trust={wanted!r}), or `{flags}` on "
        "the command line (predict, export); or re-save it as a plain state dict / safetensors"
    )
