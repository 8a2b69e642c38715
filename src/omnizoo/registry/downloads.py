"""Downloads by model name: ``download_weights`` and the lock file's name resolution.

The weights layer (:mod:`omnizoo.weights`) knows URLs, hashes and the cache; this module adds
what only the registry knows: which file a model name means.

>>> from omnizoo import download_weights                      # doctest: +SKIP
>>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError, NoPretrainedWeightsError
from ..values.card import WeightsFile
from ..weights.download import fetch_verified
from ..weights.lockfile import LockEntry, WeightsLock, lock_entry
from ..weights.verification import Fetched, recording
from .registry import get_card

__all__ = ["add_to_cache", "download_weights", "lock_targets"]


def download_weights(
    name_or_url: str,
    *,
    sha256: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Path:
    """Return the path of the verified file for a model name or a URL, downloading it once.

    ``name_or_url``: a registry name (``"torchvision:resnet50"``; its card's weights file,
    mirrors and hashes are used) or any http(s) URL. ``sha256``: the full expected digest;
    without it a URL is checked against the hash prefix in its file name (torch.hub's
    ``-<hex>.`` convention), a Hugging Face file against the sha256 its origin announces, and a
    file with none of these is accepted from its origin (never a mirror) after a content sniff,
    and recorded as unverified. ``lock``: a lock file (path or :class:`WeightsLock`) the
    download must match; None uses OMNIZOO_LOCK, False none.

    >>> from omnizoo import download_weights
    >>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
    PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')

    Raises:
        UnknownModelError: a name no model has. NoPretrainedWeightsError: a card without
            weights.
        OfflineError: OMNIZOO_OFFLINE is set and the file is not cached.
        DownloadError: every URL failed (RemoteNotFoundError: the origin says 404).
        HashMismatchError: the bytes do not match the sha256, hash prefix or size.
        NotAWeightsFileError: an HTML page or a Git-LFS pointer came back.
        FormatMismatchError: the file is another format than the card declares.
        UnpinnedError: only a mirror could serve a file whose hash is not known in advance
            (NotInLockError: the lock file does not list it).
        ConfigurationError: ``sha256`` is not a sha256; LockFileError: an unreadable lock.
    """
    if _is_url(name_or_url):
        return fetch_verified(name_or_url, sha256=sha256, lock=lock).path
    card = get_card(name_or_url)
    if card.weights is None:
        raise NoPretrainedWeightsError(
            f"{card.name} has no pretrained weights to download; "
            "`omnizoo list --pretrained` shows the names that do"
        )
    return fetch_verified(card.weights, name=card.name, sha256=sha256, lock=lock).path


def add_to_cache(
    path: str | Path,
    name_or_url: str | None = None,
    *,
    sha256: str | None = None,
    lock: str | Path | WeightsLock | bool | None = None,
) -> Fetched:
    """Add a local copy of a weights file to the cache (``omnizoo cache add FILE [--as
    NAME]``), verified as its download would be (:mod:`omnizoo.weights.add`).

    ``name_or_url``: the model name or URL the file is a copy of; without it, the one card
    whose weights file has this file's name (torch.hub names such as
    ``resnet18-f37072fd.pth`` are unique). ``sha256``: the digest to check it against when
    nothing else pins it.
    """
    from ..weights.add import add_file

    file = Path(path).expanduser()
    if name_or_url is None:
        name_or_url = _card_for_file(file.name)
    if _is_url(name_or_url):
        return add_file(file, (name_or_url,), sha256=sha256, lock=lock)
    card = get_card(name_or_url)
    if card.weights is None:
        raise NoPretrainedWeightsError(f"{card.name} has no weights file to add")
    w = card.weights
    return add_file(
        file,
        tuple(w.urls),
        sha256=sha256 or w.sha256,
        hash_prefix=w.hash_prefix,
        size=w.size,
        fmt=w.format,
        name=card.name,
        hf_hub_id=w.hf_hub_id,
        lock=lock,
    )


def _is_url(value: str) -> bool:
    """Whether ``value`` is a URL (a registry name never holds ``://``)."""
    return "://" in value


def _card_for_file(filename: str) -> str:
    """The name of the only card whose weights file is called ``filename``."""
    from .resolution import source_indexes as _indexes

    found: list[str] = []
    for idx in _indexes(None):
        for card_name in idx.weighted:
            weights = idx.raw[card_name].get("weights") or {}
            urls = weights.get("urls") or []
            names = {weights.get("filename")} | {
                u.split("?", 1)[0].rsplit("/", 1)[-1] for u in urls
            }
            if filename in names:
                found.append(card_name)
    if len(found) == 1:
        return found[0]
    what = "no model's weights file" if not found else f"{len(found)} models' weights files"
    raise ConfigurationError(
        f"cache add: {what} {'is' if not found else 'are'} called {filename!r}"
        + (f" ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''})" if found else "")
        + "; say which with --as NAME_OR_URL"
    )


def lock_targets(targets: Sequence[str]) -> list[LockEntry]:
    """Resolve model names or URLs to lock entries (downloading and verifying as needed).

    Runs with no lock in force (it is how a lock is made). Every file fetched while resolving a
    target is listed (e.g. an ``hf-hub:`` model's ``config.json``), the target's own file under
    its name.
    """
    entries: dict[tuple[str | None, str], LockEntry] = {}
    for target in targets:
        with recording() as seen:
            if _is_url(target):
                filename = target.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                main = fetch_verified(WeightsFile(urls=(target,), filename=filename), lock=False)
                name, fmt = None, None
            else:
                card = get_card(target)
                if card.weights is None:
                    raise NoPretrainedWeightsError(
                        f"{card.name} has no pretrained weights to lock; `omnizoo list "
                        "--pretrained` shows the names that do"
                    )
                main = fetch_verified(card.weights, name=card.name, lock=False)
                name, fmt = card.name, card.weights.format
        for other in seen:
            if other.path != main.path or other.urls != main.urls:
                entries[(None, other.urls[0])] = lock_entry(other, None, None)
        entries[(name, main.urls[0])] = lock_entry(main, name, fmt)
    return list(entries.values())
