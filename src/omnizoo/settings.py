"""Every ``OMNIZOO_*`` environment variable, parsed once, in one place.

Nothing else in omnizoo reads ``os.environ``. Code asks :func:`get_settings` for a frozen
:class:`Settings`; tests change the environment and call :func:`reset`, or use
:func:`override` to patch single values::

    >>> from omnizoo import settings
    >>> with settings.override(offline=True):
    ...     settings.get_settings().offline
    True

=========================== ============================================= =====================
variable                    meaning                                       default
=========================== ============================================= =====================
OMNIZOO_HOME                cache root (weights, card index, manifests)   platform user cache
OMNIZOO_OFFLINE             1: no network call at all                     0
OMNIZOO_MIRRORS             JSON {url prefix: mirror prefix | [..]}        {}
HF_ENDPOINT                 Hugging Face endpoint for huggingface.co URLs https://huggingface.co
                            (a mirror: its bytes must match the sha256
                            the origin announces, or a pin)
OMNIZOO_HF_ORIGIN           the Hub trusted to announce file hashes       https://huggingface.co
                            (HEAD /resolve: X-Linked-Etag, X-Repo-Commit)
OMNIZOO_LOCK                a weights lock file (``omnizoo lock``): every unset
                            download must match it; unlisted names and
                            URLs are refused
OMNIZOO_SOURCE_ORDER        comma list: which sources win a bare name     the table order:
                            first (the rest follow in table order)        torchvision,timm,
                                                                          cadene,efficientnet,onnx
OMNIZOO_PROGRESS            auto (bar on a TTY) / 1 / 0                   auto
OMNIZOO_CONNECT_TIMEOUT     seconds to connect (0.001 to 3600)            10
OMNIZOO_READ_TIMEOUT        seconds without a byte before giving up       60
                            (0.001 to 3600)
OMNIZOO_DOWNLOAD_TIMEOUT    seconds for one file from one URL, every      10800 (3 hours)
                            retry included (1 to 604800, a week)
OMNIZOO_RETRIES             attempts per URL on 5xx / connection errors   5
                            (an integer, 1 to 100)
OMNIZOO_BACKOFF             first back-off in seconds (doubles; 0 to 300) 0.5
OMNIZOO_RAY_CONNECT_TIMEOUT seconds to reach a Ray cluster given by       30
                            ``--engine ray --address`` (0.1 to 3600)
OMNIZOO_CARD_CACHE          0: rebuild the card index on every use        1
OMNIZOO_TRUST_PICKLE        1: allow full unpickling of *verified* files  0
                            (pinned, origin or prefix; never unverified)
OMNIZOO_ONNX_MANIFEST_URL   where the ONNX zoo manifest is fetched from   pinned onnx/models
OMNIZOO_ECOSYSTEM_CACHES    0: never adopt files from the torch.hub and   1
                            Hugging Face caches below
TORCH_HOME                  torch.hub's cache (files in hub/checkpoints   $XDG_CACHE_HOME/torch
                            are adopted once verified)                    (~/.cache/torch)
HF_HUB_CACHE, HF_HOME       the Hugging Face cache (models--org--repo/;   $HF_HOME/hub
                            files adopted once verified)                  (~/.cache/huggingface)
HF_TOKEN                    sent as ``Authorization: Bearer`` to the Hub  unset
                            origin (gated repos), never to a mirror
HF_HUB_OFFLINE              1: no request for a Hugging Face file (the    0
                            caches only); other URLs are unaffected
=========================== ============================================= =====================

Numbers must be finite and inside the range shown; anything else (``nan``, ``inf``, ``1e9``
retries, a negative back-off) is a :class:`~omnizoo.errors.ConfigurationError` naming the
variable, the value and the range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["Settings", "get_settings", "override", "reset"]

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# The last commit of onnx/models that changed the manifest (2023-12-26, #647); pinned so that the
# manifest's sha256 can be checked like any other weights file.
DEFAULT_ONNX_MANIFEST_URL = (
    "https://raw.githubusercontent.com/onnx/models/"
    "ddbbd1274c8387e3745778705810c340dea3d8c7/ONNX_HUB_MANIFEST.json"
)

DEFAULT_DOWNLOAD_TIMEOUT = 3 * 3600.0
# (minimum, maximum) of each number setting: finite, and small enough that a back-off of
# BACKOFF * 2**RETRIES stays computable (the waiters' stall rule uses it).
LIMITS: dict[str, tuple[float, float]] = {
    "OMNIZOO_CONNECT_TIMEOUT": (0.001, 3600.0),
    "OMNIZOO_READ_TIMEOUT": (0.001, 3600.0),
    "OMNIZOO_DOWNLOAD_TIMEOUT": (1.0, 7 * 24 * 3600.0),
    "OMNIZOO_RETRIES": (1, 100),
    "OMNIZOO_BACKOFF": (0.0, 300.0),
    "OMNIZOO_RAY_CONNECT_TIMEOUT": (0.1, 3600.0),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """The parsed configuration. Build one with :func:`get_settings`, never by hand."""

    home: Path
    offline: bool = False
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    # The Hub whose HEAD answers are trusted (where https://huggingface.co really is).
    hf_origin: str = DEFAULT_HF_ENDPOINT
    # A weights lock file every download must match (None: no lock).
    lock: Path | None = None
    # Sources named in OMNIZOO_SOURCE_ORDER (checked against the table of sources when used).
    source_order: tuple[str, ...] = ()
    progress: bool | None = None  # None: only when stderr is a TTY
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT  # per URL, every retry included
    ray_connect_timeout: float = 30.0  # reaching a Ray cluster by address
    card_cache: bool = True
    trust_pickle: bool = False
    onnx_manifest_url: str = DEFAULT_ONNX_MANIFEST_URL
    # The ecosystem's caches, whose verified files are adopted instead of downloaded again.
    ecosystem_caches: bool = True
    torch_home: Path | None = None
    hf_hub_cache: Path | None = None
    # Hugging Face: a token for gated repos (sent to the origin only) and offline mode.
    hf_token: str | None = field(default=None, repr=False)
    hf_hub_offline: bool = False

    @property
    def weights_dir(self) -> Path:
        """Where verified weight files live (content-addressed)."""
        return self.home / "weights"

    @property
    def index_dir(self) -> Path:
        """Where the per-(source, library version) card indexes are cached."""
        return self.home / "index"


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use 1 or 0")


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False) -> float:
    """A finite number within ``LIMITS[name]`` (an integer with ``integer``)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    low, high = LIMITS[name]
    kind = "an integer" if integer else "a finite number"
    allowed = f"allowed: {kind} from {low:g} to {high:g}"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a number ({allowed}); e.g. {name}={default:g}"
        ) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigurationError(f"{name}={raw!r} is out of range ({allowed})")
    if integer and value != int(value):
        raise ConfigurationError(f"{name}={raw!r} must be an integer ({allowed})")
    return value


def parse_mirrors(
    raw: str | None, *, variable: str = "OMNIZOO_MIRRORS"
) -> dict[str, tuple[str, ...]]:
    """Parse the OMNIZOO_MIRRORS JSON object into ``{prefix: (mirror, ...)}``."""
    if raw is None or not raw.strip():
        return {}
    example = '{"https://download.pytorch.org/models/": "http://10.0.0.5/tv/"}'
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{variable} is not valid JSON ({exc.msg} at char {exc.pos}); expected e.g. {example}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{variable} must be a JSON object, e.g. {example}")
    mirrors: dict[str, tuple[str, ...]] = {}
    for prefix, target in data.items():
        targets = [target] if isinstance(target, str) else target
        if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
            raise ConfigurationError(
                f"{variable}[{prefix!r}] must be a URL prefix or a list of them, got {target!r}"
            )
        mirrors[str(prefix)] = tuple(targets)
    return mirrors


def _source_order(raw: str | None) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return ()
    order = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    bad = [s for s in order if not s.replace("_", "").isalnum()]
    if bad:
        raise ConfigurationError(
            f"OMNIZOO_SOURCE_ORDER={raw!r} is not a comma list of source names, "
            "e.g. OMNIZOO_SOURCE_ORDER=timm,torchvision"
        )
    return order


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not raw.startswith(("http://", "https://")):
        raise ConfigurationError(f"{name}={raw!r} is not an http(s) URL, e.g. {name}={default}")
    return raw.rstrip("/")


def _default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("omnizoo", appauthor=False))


def _cache_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache``: where torch and huggingface_hub put their caches
    on every platform (they do not use the platform's cache directory)."""
    return Path(env.get("XDG_CACHE_HOME") or "~/.cache").expanduser()


def torch_home(env: Mapping[str, str]) -> Path:
    """torch.hub's cache root, by torch's own rule (``torch.hub._get_torch_home``)."""
    raw = env.get("TORCH_HOME")
    return Path(raw).expanduser() if raw else _cache_home(env) / "torch"


def hf_hub_cache(env: Mapping[str, str]) -> Path:
    """The Hugging Face cache, by huggingface_hub's rule: ``HF_HUB_CACHE``, the legacy
    ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (``HF_HOME``: ``~/.cache/huggingface``)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        raw = env.get(name)
        if raw:
            return Path(raw).expanduser()
    home = env.get("HF_HOME")
    base = Path(home).expanduser() if home else _cache_home(env) / "huggingface"
    return base / "hub"


def from_environ(env: Mapping[str, str]) -> Settings:
    """Parse a mapping of environment variables (``os.environ`` in practice)."""
    home_raw = env.get("OMNIZOO_HOME")
    home = Path(home_raw).expanduser() if home_raw else _default_home()
    progress_raw = env.get("OMNIZOO_PROGRESS", "auto").strip().lower()
    progress = None if progress_raw in ("auto", "") else _flag(env, "OMNIZOO_PROGRESS", False)
    retries = _number(env, "OMNIZOO_RETRIES", 5, integer=True)
    return Settings(
        home=home,
        offline=_flag(env, "OMNIZOO_OFFLINE", False),
        mirrors=parse_mirrors(env.get("OMNIZOO_MIRRORS")),
        hf_endpoint=(env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/"),
        hf_origin=_http_url(env, "OMNIZOO_HF_ORIGIN", DEFAULT_HF_ENDPOINT),
        lock=Path(lock_raw).expanduser() if (lock_raw := env.get("OMNIZOO_LOCK")) else None,
        source_order=_source_order(env.get("OMNIZOO_SOURCE_ORDER")),
        progress=progress,
        connect_timeout=_number(env, "OMNIZOO_CONNECT_TIMEOUT", 10.0),
        read_timeout=_number(env, "OMNIZOO_READ_TIMEOUT", 60.0),
        download_timeout=_number(env, "OMNIZOO_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT),
        retries=int(retries),
        backoff=_number(env, "OMNIZOO_BACKOFF", 0.5),
        ray_connect_timeout=_number(env, "OMNIZOO_RAY_CONNECT_TIMEOUT", 30.0),
        card_cache=_flag(env, "OMNIZOO_CARD_CACHE", True),
        trust_pickle=_flag(env, "OMNIZOO_TRUST_PICKLE", False),
        onnx_manifest_url=env.get("OMNIZOO_ONNX_MANIFEST_URL") or DEFAULT_ONNX_MANIFEST_URL,
        ecosystem_caches=_flag(env, "OMNIZOO_ECOSYSTEM_CACHES", True),
        torch_home=torch_home(env),
        hf_hub_cache=hf_hub_cache(env),
        hf_token=(env.get("HF_TOKEN") or "").strip() or None,
        hf_hub_offline=_flag(env, "HF_HUB_OFFLINE", False),
    )


_lock = threading.Lock()
_current: Settings | None = None


def get_settings() -> Settings:
    """The settings in force: parsed from the environment on first use, then cached."""
    global _current
    current = _current
    if current is None:
        with _lock:
            if _current is None:
                _current = from_environ(os.environ)
            current = _current
    return current


def reset() -> None:
    """Forget the parsed settings; the next :func:`get_settings` re-reads the environment."""
    global _current
    with _lock:
        _current = None


@contextmanager
def override(**changes: Any) -> Iterator[Settings]:
    """Temporarily replace fields of the settings in force (for tests and scripts)."""
    global _current
    previous = get_settings()
    if "home" in changes:
        changes["home"] = Path(changes["home"])
    if changes.get("lock") is not None:
        changes["lock"] = Path(changes["lock"])
    patched = dataclasses.replace(previous, **changes)
    with _lock:
        _current = patched
    try:
        yield patched
    finally:
        with _lock:
            _current = previous
