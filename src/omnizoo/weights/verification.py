"""What "verified" means for a cached file, and the rules that follow from it.

Every ref (URL -> blob record in the cache) carries one of these states, strongest first:

========== ==========================================================================
pinned     the sha256 was known in advance: the card's, the caller's (``sha256=``) or a
           lock file's (``omnizoo lock``)
origin     the sha256 and size (or, for a small file kept in git, the git blob sha1) that
           the origin announced for a pinned revision (the Hugging Face Hub's HEAD)
prefix     the sha256 starts with the hash prefix in the file name (torch.hub's convention)
unverified nothing was known in advance; only the content sniff ran (the sha256 of what
           arrived is recorded, so later reads are checked against it)
========== ==========================================================================

The rules (enforced in :mod:`omnizoo.weights.download` and the loaders):

* a mirror (an OMNIZOO_MIRRORS rewrite or HF_ENDPOINT) is used only for a file whose expected
  hash is known before its body is fetched (pinned, prefix or origin); otherwise the file comes
  from its origin or not at all, and the error says how to pin it;
* only pinned, origin and prefix count as verified: an unverified file is never unpickled,
  whatever OMNIZOO_TRUST_PICKLE says;
* the card's declared format (``WeightsFile.format``) is enforced: content that sniffs as
  another format (a pickle served for a safetensors card) is refused before it is cached or
  loaded.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FormatMismatchError, HashMismatchError
from ..settings import Settings
from .hashing import SNIFF_BYTES, detect_format

__all__ = [
    "ORIGIN",
    "PINNED",
    "PREFIX",
    "STATES",
    "TRUSTED",
    "UNVERIFIED",
    "Candidate",
    "Expected",
    "Fetched",
    "check_file_format",
    "check_format",
    "check_git_sha1",
    "how_to_pin",
    "plan_candidates",
    "recording",
    "report",
    "state_of",
    "strongest",
]

PINNED = "pinned"
ORIGIN = "origin"
PREFIX = "prefix"
UNVERIFIED = "unverified"
#: Strongest first.
STATES = (PINNED, ORIGIN, PREFIX, UNVERIFIED)
#: The states that count as verified (for OMNIZOO_TRUST_PICKLE and mirrors).
TRUSTED = frozenset((PINNED, ORIGIN, PREFIX))

_FORMAT_NAMES = {
    "pickle": "a torch.save file (pickle)",
    "safetensors": "a safetensors file (safetensors)",
    "npz": "a numpy archive (npz)",
    "onnx": "an ONNX model (onnx)",
}


def strongest(*states: str | None) -> str:
    """The strongest of ``states`` (None and unknown values count as unverified)."""
    ranks = [STATES.index(s) for s in states if s in STATES]
    return STATES[min(ranks)] if ranks else UNVERIFIED


def state_of(record: Mapping[str, Any] | None) -> str:
    """The verification state recorded in a ref (refs written before states existed, or
    with an unknown value, are unverified)."""
    value = record.get("verification") if record else None
    return value if isinstance(value, str) and value in STATES else UNVERIFIED


@dataclass(frozen=True)
class Expected:
    """What a request knows about the bytes before fetching them, and how it knows it."""

    sha256: str | None = None
    hash_prefix: str | None = None
    size: int | None = None
    git_sha1: str | None = None  # a Hub file kept in git: its blob sha1 (never a sha256)
    state: str = UNVERIFIED
    revision: str | None = None  # the Hub commit the facts belong to

    @property
    def known(self) -> bool:
        """Whether the bytes can be checked against something known in advance."""
        return bool(self.sha256 or self.hash_prefix or self.git_sha1)


@dataclass(frozen=True)
class Fetched:
    """A file in the cache and how it was verified."""

    path: Path
    sha256: str
    size: int
    verification: str
    urls: tuple[str, ...]
    name: str | None = None
    revision: str | None = None

    @property
    def verified(self) -> bool:
        """Pinned, origin or prefix: the bytes matched something known in advance."""
        return self.verification in TRUSTED


@dataclass(frozen=True)
class Candidate:
    """One URL to try, and whether it is a mirror (not the file's origin)."""

    url: str
    mirror: bool


def plan_candidates(
    urls: Sequence[str],
    settings: Settings,
    *,
    pin: Callable[[str], str] = lambda url: url,
    origin: Callable[[str], str] = lambda url: url,
) -> list[Candidate]:
    """The URLs to try, in order, each marked mirror or origin.

    For each URL of the chain: its OMNIZOO_MIRRORS rewrites (longest matching prefix first,
    that prefix's mirrors in order; mirrors), then the URL itself at its pinned revision
    (``pin``), on HF_ENDPOINT when that rewrites it (a mirror), else on its origin
    (``origin``: OMNIZOO_HF_ORIGIN for Hub URLs). Duplicates are dropped.
    """
    from .endpoints import apply_hf_endpoint, mirror_urls

    out: list[Candidate] = []
    for url in urls:
        out.extend(Candidate(m, mirror=True) for m in mirror_urls(url, settings))
        direct = pin(url)
        endpoint = apply_hf_endpoint(direct, settings.hf_endpoint)
        if endpoint != direct:
            out.append(Candidate(endpoint, mirror=True))
        else:
            out.append(Candidate(origin(direct), mirror=False))
    seen: set[str] = set()
    unique = []
    for c in out:
        if c.url not in seen:
            seen.add(c.url)
            unique.append(c)
    return unique


def how_to_pin(what: str, url: str) -> str:
    """The sentence that says how to pin a file's sha256 in advance."""
    return (
        f"pin it: run `omnizoo lock {what} -o omnizoo.lock` on a machine that reaches its "
        "origin and set OMNIZOO_LOCK=omnizoo.lock (add more names with `omnizoo lock NAME "
        f"--update -o omnizoo.lock`), or pass its sha256: download_weights({url!r}, "
        "sha256=...)"
    )


def check_format(head: bytes, declared: str | None, where: str) -> None:
    """Raise :class:`FormatMismatchError` when ``head`` (a file's first bytes) sniffs as
    another known format than ``declared``. Unrecognised content passes: it cannot run code,
    and the reader for the declared format refuses it."""
    if not declared:
        return
    found = detect_format(head)
    if found is None or found == declared:
        return
    raise FormatMismatchError(
        f"{where}: the card declares {declared} but the file is "
        f"{_FORMAT_NAMES.get(found, found)}; refused before loading "
        "(a mirror or cache serving other content than the published file)",
        declared=declared,
        found=found,
    )


def check_file_format(path: Path, declared: str | None, where: str) -> None:
    """:func:`check_format` on the first bytes of a file on disk."""
    if not declared:
        return
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    check_format(head, declared, where)


def check_git_sha1(path: Path, expected: str, url: str) -> None:
    """Raise :class:`HashMismatchError` unless the file's git blob sha1 is ``expected``."""
    from .origin import git_blob_sha1

    actual = git_blob_sha1(path)
    if actual != expected:
        raise HashMismatchError(
            f"{url}: git blob sha1 mismatch: the origin announced {expected}, got {actual} "
            f"({path.stat().st_size} bytes); not the published file (nothing was cached)"
        )


# -- recording what a block of code fetched (for `omnizoo lock`) ----------------------------
_RECORDERS: contextvars.ContextVar[tuple[list[Fetched], ...]] = contextvars.ContextVar(
    "omnizoo_fetch_recorders", default=()
)


@contextlib.contextmanager
def recording() -> Iterator[list[Fetched]]:
    """Collect every file fetched (or found in the cache) inside the block."""
    seen: list[Fetched] = []
    token = _RECORDERS.set((*_RECORDERS.get(), seen))
    try:
        yield seen
    finally:
        _RECORDERS.reset(token)


def report(fetched: Fetched) -> Fetched:
    """Tell the active recorders about a fetched file; returns it."""
    for seen in _RECORDERS.get():
        seen.append(fetched)
    return fetched
