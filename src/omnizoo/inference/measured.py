"""Measurements made on this machine: speed (``omnizoo benchmark``) and accuracy on a user's
own labelled data (``omnizoo validate``), kept per machine so that ``compare`` and
``plot --measured`` can show them beside the cards' published figures.

Where: ``OMNIZOO_HOME/measured/<fingerprint>.json``, one file per machine fingerprint
(:func:`machine_fingerprint`: a hash of the CPU model, core count, total memory, GPU models,
and the torch and onnxruntime versions; its readable parts are stored in the file). A newer
measurement of the same configuration replaces the older one: speed records are keyed by
(model, backend, precision, device, threads, batch size), accuracy records by (model,
dataset, backend, precision). ``model`` is the card's qualified name (``ModelCard.name``,
``torchvision:resnet50.IMAGENET1K_V2``); top-1/top-5 are percentages, as on the cards.

The home may be shared, so the file is untrusted input: it is read without following a
symlink, size-capped, and every field is validated with :class:`~omnizoo.schema.Fields`.

**How omnizoo tells a file it wrote.** omnizoo writes the file only whole (a temp file and a
rename, :func:`~omnizoo.weights.fsafe.write_atomic`, under a file lock), always with the
marker ``"format": "omnizoo-measured"``, ``"version": 1`` and its own fingerprint. So a
file that is not a regular file, is not JSON, lacks the marker, names another fingerprint or
has any field that does not validate was not written by omnizoo as it is now (a torn file is
impossible). Such a file is reported once (a warning naming it and the fix), read as holding
no measurements, and never overwritten, truncated or deleted: recording into it is skipped
with the same warning until the user moves it away.

>>> fp, parts = machine_fingerprint()
>>> len(fp), sorted(parts) == sorted(MACHINE_KEYS)
(16, True)
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .machine import MACHINE_KEYS, machine_fingerprint

__all__ = [
    "MACHINE_KEYS",
    "AccuracyRecord",
    "Measured",
    "SpeedRecord",
    "machine_fingerprint",
    "measured_path",
    "read_measured",
    "record_accuracy",
    "record_speed",
]

FORMAT = "omnizoo-measured"
VERSION = 1
#: Records a file may hold (a hostile file with millions is refused, not parsed on).
MAX_RECORDS = 20_000
_MAX_MS = 3_600_000.0  # an hour per batch: anything longer is not a measurement
_MAX_IPS = 1e9
_MAX_MB = 1e8
_LOCK_TIMEOUT = 60.0


@dataclass(frozen=True)
class SpeedRecord:
    """One ``omnizoo benchmark`` measurement: latency per batch (median and interquartile
    range over the timed repeats, milliseconds), throughput (images per second), peak memory
    (MB, None where not measured) and when it was recorded (Unix time)."""

    model: str
    backend: str
    precision: str
    device: str
    threads: int
    batch_size: int
    latency_ms_median: float
    latency_ms_iqr: float
    throughput_ips: float
    peak_memory_mb: float | None
    recorded: float = 0.0

    def key(self) -> tuple[str, str, str, str, int, int]:
        return (self.model, self.backend, self.precision, self.device, self.threads,
                self.batch_size)  # fmt: skip


@dataclass(frozen=True)
class AccuracyRecord:
    """One ``omnizoo validate`` result: top-1/top-5 (percent) on ``n`` images of ``dataset``."""

    model: str
    dataset: str
    n: int
    top1: float
    top5: float | None
    backend: str
    precision: str
    recorded: float = 0.0

    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.dataset, self.backend, self.precision)


@dataclass(frozen=True)
class Measured:
    """The measurements of one machine (``fingerprint``; ``machine``: its readable parts).

    ``damaged``: why the file was not read (None when it was read or did not exist).
    """

    fingerprint: str
    machine: dict[str, str] = field(default_factory=dict)
    speed: tuple[SpeedRecord, ...] = ()
    accuracy: tuple[AccuracyRecord, ...] = ()
    path: Path | None = None
    damaged: str | None = None

    def latency(self, model: str) -> SpeedRecord | None:
        """The fastest batch-1 record of ``model`` (any backend, precision, threads), or None."""
        runs = [r for r in self.speed if r.model == model and r.batch_size == 1]
        return min(runs, key=lambda r: r.latency_ms_median, default=None)

    def throughput(self, model: str) -> SpeedRecord | None:
        """The record of ``model`` with the highest throughput (any batch size), or None."""
        runs = [r for r in self.speed if r.model == model]
        return max(runs, key=lambda r: r.throughput_ips, default=None)

    def top1(self, model: str) -> AccuracyRecord | None:
        """The accuracy record of ``model`` measured on the most images (latest on a tie)."""
        runs = [r for r in self.accuracy if r.model == model]
        return max(runs, key=lambda r: (r.n, r.recorded), default=None)


def measured_path(fingerprint: str | None = None) -> Path:
    """``OMNIZOO_HOME/measured/<fingerprint>.json`` (this machine's by default)."""
    from ..settings import get_settings

    fp = fingerprint or machine_fingerprint()[0]
    if len(fp) != 16 or any(c not in "0123456789abcdef" for c in fp):
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"machine fingerprint {fp!r} is not 16 hex digits (see `omnizoo benchmark --help`)"
        )
    return get_settings().home / "measured" / f"{fp}.json"


# -- reading -----------------------------------------------------------------------------------
def _speed(f: Any) -> SpeedRecord:
    return SpeedRecord(
        model=f.text("model", max_len=512),
        backend=f.text("backend", max_len=64),
        precision=f.text("precision", max_len=64),
        device=f.text("device", max_len=64),
        threads=f.integer("threads", lo=0, hi=1 << 16),
        batch_size=f.integer("batch_size", lo=1, hi=1 << 20),
        latency_ms_median=f.number("latency_ms_median", lo=0.0, hi=_MAX_MS),
        latency_ms_iqr=f.number("latency_ms_iqr", lo=0.0, hi=_MAX_MS),
        throughput_ips=f.number("throughput_ips", lo=0.0, hi=_MAX_IPS),
        peak_memory_mb=f.optional_number("peak_memory_mb", lo=0.0, hi=_MAX_MB),
        recorded=f.number("recorded", lo=0.0, hi=1e11),
    )


def _accuracy(f: Any) -> AccuracyRecord:
    return AccuracyRecord(
        model=f.text("model", max_len=512),
        dataset=f.text("dataset", max_len=4096),
        n=f.integer("n", lo=1, hi=10**10),
        top1=f.number("top1", lo=0.0, hi=100.0),
        top5=f.optional_number("top5", lo=0.0, hi=100.0),
        backend=f.text("backend", max_len=64),
        precision=f.text("precision", max_len=64),
        recorded=f.number("recorded", lo=0.0, hi=1e11),
    )


def _records(data: Any, key: str, path: Path, make: Any) -> tuple[Any, ...]:
    from ..errors import MetadataError
    from ..schema import Fields

    items = data.get(key, [])
    if not isinstance(items, list) or len(items) > MAX_RECORDS:
        raise MetadataError(str(path), key, f"expected a list of at most {MAX_RECORDS} records")
    return tuple(make(Fields(item, path, f"{key}[{i}]")) for i, item in enumerate(items))


def _parse(raw: bytes, path: Path, fingerprint: str) -> Measured:
    from ..errors import MetadataError
    from ..schema import Fields, parse_json

    data = parse_json(raw, str(path))
    f = Fields(data, path)
    if f.optional_text("format", max_len=64) != FORMAT:
        raise f.error("format", f"not {FORMAT!r}: not a file omnizoo wrote")
    f.integer("version", lo=VERSION, hi=VERSION)
    if f.text("fingerprint", max_len=64) != fingerprint:
        raise f.error("fingerprint", f"does not match the file name ({fingerprint})")
    m = f.object("machine")
    machine = {k: m.text(k, max_len=512) for k in MACHINE_KEYS}
    extra = set(m.data) - set(MACHINE_KEYS)
    if extra:
        raise MetadataError(str(path), "machine", f"unknown parts {sorted(extra)[:5]}")
    return Measured(
        fingerprint=fingerprint,
        machine=machine,
        speed=_records(f.data, "speed", path, _speed),
        accuracy=_records(f.data, "accuracy", path, _accuracy),
        path=path,
    )


def _load(path: Path, fingerprint: str) -> Measured:
    """The file's measurements; a missing file is empty, anything unreadable is ``damaged``."""
    from ..errors import MetadataError
    from ..schema import MAX_METADATA_BYTES
    from ..weights import fsafe

    try:
        raw = fsafe.read_regular(path, MAX_METADATA_BYTES)  # no symlink followed
        return _parse(raw, path, fingerprint)
    except (FileNotFoundError, NotADirectoryError):
        return Measured(fingerprint, path=path)
    except (OSError, ValueError, MetadataError) as exc:
        return Measured(fingerprint, path=path, damaged=f"{type(exc).__name__}: {exc}")


def _warn_damaged(measured: Measured, doing: str) -> None:
    warnings.warn(
        f"omnizoo: ignoring the measurements file {measured.path} ({measured.damaged}); "
        f"omnizoo did not write it as it is, so it is {doing}. Move it away to record "
        "measurements for this machine again.",
        stacklevel=3,
    )


def read_measured(fingerprint: str | None = None) -> Measured:
    """The measurements recorded for a machine (this one by default), typed and validated.

    A missing file is an empty :class:`Measured`; a damaged or foreign one is reported with a
    warning and read as empty (``damaged`` says why), never raised.

    >>> m = read_measured()
    >>> isinstance(m.speed, tuple) and m.fingerprint == machine_fingerprint()[0]
    True

    Raises:
        ConfigurationError: ``fingerprint`` is not 16 hexadecimal digits.
    """
    fp, parts = machine_fingerprint() if fingerprint is None else (fingerprint, {})
    path = measured_path(fp)
    measured = _load(path, fp)
    if measured.damaged:
        _warn_damaged(measured, "read as empty")
    elif not measured.machine and parts:
        measured = Measured(fp, parts, path=path)
    return measured


# -- writing -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<file>.lock`` (flock through filelock, as the weights cache's download locks)."""
    import filelock

    from ..errors import CacheError
    from ..weights import fsafe

    lock_path = path.with_name(path.name + ".lock")
    # drops a planted symlink first (older filelock versions follow it)
    mode = fsafe.lock_file_mode(lock_path)
    lock: filelock.BaseFileLock = filelock.FileLock(str(lock_path), mode=mode)
    try:
        lock.acquire(timeout=_LOCK_TIMEOUT)
    except NotImplementedError:  # no flock on this filesystem
        lock = filelock.SoftFileLock(str(lock_path) + ".soft")
        lock.acquire(timeout=_LOCK_TIMEOUT)
    except filelock.Timeout:
        raise CacheError(
            f"the measurements lock {lock_path} was not released within {_LOCK_TIMEOUT:.0f}s; "
            "is another `omnizoo benchmark` stuck? Remove the lock file if none runs"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _record(kind: str, record: SpeedRecord | AccuracyRecord) -> None:
    fp, parts = machine_fingerprint()
    path = measured_path(fp)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.is_symlink():  # planted in a shared home: never written through
            raise NotADirectoryError(errno.ENOTDIR, "a symlink, not omnizoo's folder", path.parent)
        with _locked(path):
            current = _load(path, fp)
            if current.damaged:
                _warn_damaged(current, "not overwritten and this measurement is not recorded")
                return
            speed = [r for r in current.speed if not (kind == "speed" and r.key() == record.key())]
            acc = [r for r in current.accuracy if not (kind == "acc" and r.key() == record.key())]
            (speed if kind == "speed" else acc).append(record)  # type: ignore[arg-type]
            doc = {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": fp,
                "machine": parts,
                "speed": [asdict(r) for r in speed[-MAX_RECORDS:]],
                "accuracy": [asdict(r) for r in acc[-MAX_RECORDS:]],
            }
            from ..weights import fsafe

            fsafe.write_atomic(path, json.dumps(doc, indent=1).encode("utf-8"))
    except OSError as exc:  # a read-only home: the figures were still printed
        warnings.warn(f"omnizoo: cannot record the measurement in {path}: {exc}", stacklevel=3)


def _finite(name: str, value: float, lo: float, hi: float) -> float:
    import math

    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"{name}={value!r} is not a measurement in [{lo}, {hi}]")
    return value


def record_speed(
    model: str,
    *,
    backend: str,
    precision: str,
    device: str,
    threads: int,
    batch_size: int,
    latency_ms_median: float,
    latency_ms_iqr: float,
    throughput_ips: float,
    peak_memory_mb: float | None,
) -> None:
    """Record a speed measurement of ``model`` for this machine (replacing the one of the same
    backend, precision, device, threads and batch size).

    A home that cannot be written, or a measurements file omnizoo did not write, is a
    warning (the measurement is not kept), not an error.

    >>> record_speed("doctest:example", backend="torch", precision="fp32", device="cpu",
    ...              threads=2, batch_size=1, latency_ms_median=12.5, latency_ms_iqr=0.4,
    ...              throughput_ips=80.0, peak_memory_mb=None)
    >>> read_measured().latency("doctest:example").latency_ms_median
    12.5

    Raises:
        ConfigurationError: a figure is negative, not finite or out of range.
    """
    _record(
        "speed",
        SpeedRecord(
            model=model,
            backend=backend,
            precision=precision,
            device=device,
            threads=int(_finite("threads", threads, 0, 1 << 16)),
            batch_size=int(_finite("batch_size", batch_size, 1, 1 << 20)),
            latency_ms_median=_finite("latency_ms_median", latency_ms_median, 0.0, _MAX_MS),
            latency_ms_iqr=_finite("latency_ms_iqr", latency_ms_iqr, 0.0, _MAX_MS),
            throughput_ips=_finite("throughput_ips", throughput_ips, 0.0, _MAX_IPS),
            peak_memory_mb=None
            if peak_memory_mb is None
            else _finite("peak_memory_mb", peak_memory_mb, 0.0, _MAX_MB),
            recorded=time.time(),
        ),
    )


def record_accuracy(
    model: str,
    *,
    dataset: str,
    n: int,
    top1: float,
    top5: float | None,
    backend: str,
    precision: str,
) -> None:
    """Record the accuracy of ``model`` measured on ``n`` images of ``dataset`` (top-1/top-5 in
    percent, as on the cards), replacing the one of the same dataset, backend and precision.

    A home that cannot be written, or a measurements file omnizoo did not write, is a
    warning (the result is not kept), not an error.

    >>> record_accuracy("doctest:example", dataset="/data/pets", n=200, top1=71.5, top5=None,
    ...                 backend="torch", precision="fp32")
    >>> read_measured().top1("doctest:example").top1
    71.5

    Raises:
        ConfigurationError: ``n`` is not positive or an accuracy is outside [0, 100].
    """
    _record(
        "acc",
        AccuracyRecord(
            model=model,
            dataset=dataset,
            n=int(_finite("n", n, 1, 1e10)),
            top1=_finite("top1", top1, 0.0, 100.0),
            top5=None if top5 is None else _finite("top5", top5, 0.0, 100.0),
            backend=backend,
            precision=precision,
            recorded=time.time(),
        ),
    )
