"""Downloads by model name: ``download_weights`` and the lock file's name resolution.

The weights layer (:mod:`omnizoo.weights`) knows URLs, hashes and the cache; this module adds
what only the registry knows: which file a model name means.

>>> from omnizoo import download_weights                      # doctest: +SKIP
>>> download_weights("torchvision:resnet18.IMAGENET1K_V1")    # doctest: +SKIP
PosixPath('~/.cache/omnizoo/weights/blobs/sha256/f37072fd...')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..errors import NoPretrainedWeightsError
from ..weights.download import download_url, fetch_verified, is_url
from ..weights.lockfile import LockEntry, WeightsLock, lock_entry
from ..weights.verification import recording
from .card import WeightsFile
from .registry import get_card

__all__ = ["download_weights", "lock_targets"]


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
    download must match; None uses OMNIZOO_LOCK, False none. Raises :class:`OfflineError`,
    :class:`RemoteNotFoundError`, :class:`DownloadError`, :class:`HashMismatchError`,
    :class:`NotAWeightsFileError`, :class:`FormatMismatchError` or :class:`UnpinnedError`
    (:class:`NotInLockError`).
    """
    if is_url(name_or_url):
        return download_url(name_or_url, sha256=sha256, lock=lock)
    card = get_card(name_or_url)
    if card.weights is None:
        raise NoPretrainedWeightsError(
            f"{card.name} has no pretrained weights to download; "
            "`omnizoo list --pretrained` shows the names that do"
        )
    weights = card.weights
    if sha256 is not None:
        weights = dataclasses.replace(weights, sha256=sha256)
    return fetch_verified(weights, name=card.name, lock=lock).path


def lock_targets(targets: Sequence[str]) -> list[LockEntry]:
    """Resolve model names or URLs to lock entries (downloading and verifying as needed).

    Runs with no lock in force (it is how a lock is made). Every file fetched while resolving a
    target is listed (e.g. an ``hf-hub:`` model's ``config.json``), the target's own file under
    its name.
    """
    entries: dict[tuple[str | None, str], LockEntry] = {}
    for target in targets:
        with recording() as seen:
            if is_url(target):
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
