"""Every exception omnizoo raises.

Each class also inherits the builtin a caller would already catch, so ``except LookupError``
or ``except OSError`` keeps working around omnizoo calls::

    OmnizooError(Exception)
    ├── UnknownModelError(LookupError)        name not in the registry (with close matches)
    │   └── UnknownSourceError                 "foo:" is not a source
    ├── InvalidNameError(ValueError)           "a:b:c", empty names, bad characters
    ├── NoPretrainedWeightsError(LookupError)  arch exists, but has no (such) weights
    ├── ConfigurationError(ValueError)         a bad OMNIZOO_* value or bad argument combination
    │   └── LockFileError                      a weights lock file that cannot be read
    ├── UnsupportedError(ValueError)           a valid request this model/source cannot do
    ├── DependencyError(ImportError)           an optional library is missing
    ├── DownloadError(OSError)                 the bytes could not be fetched
    │   ├── RemoteNotFoundError                404/403/410: retrying will not help
    │   └── OfflineError                       OMNIZOO_OFFLINE=1 and the file is not cached
    ├── IntegrityError(OSError)                bytes arrived but are not the right bytes
    │   ├── HashMismatchError                  sha256 (prefix, git blob sha1) or size differs
    │   ├── NotAWeightsFileError               an HTML page, a Git-LFS pointer, ...
    │   ├── FormatMismatchError                another format than the card declares (pickle for
    │   │                                      safetensors, ...)
    │   └── UnpinnedError                      no expected hash where one is required (a mirror)
    │       └── NotInLockError                 a lock file is in force and does not list it
    ├── CacheError(OSError)                    the cache directory is unusable / corrupted
    ├── CheckpointError(ValueError)            a checkpoint does not fit the model
    ├── MetadataError(ValueError)              a field read from a file (card.json, .onnx
    │                                          metadata, a timing record) breaks the schema
    │   └── UnsafeCheckpointError              needs arbitrary unpickling; refused
    ├── ImageLoadError(OSError)                one image could not be decoded (per image)
    ├── BackendError(RuntimeError)             onnxruntime could not load/run a model
    └── ExportError(RuntimeError)              export failed or its outputs differ
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackendError",
    "CacheError",
    "CheckpointError",
    "ConfigurationError",
    "DependencyError",
    "DownloadError",
    "ExportError",
    "FormatMismatchError",
    "HashMismatchError",
    "ImageLoadError",
    "IntegrityError",
    "InvalidNameError",
    "LockFileError",
    "MetadataError",
    "NoPretrainedWeightsError",
    "NotAWeightsFileError",
    "NotInLockError",
    "OfflineError",
    "OmnizooError",
    "RemoteNotFoundError",
    "UnknownModelError",
    "UnknownSourceError",
    "UnpinnedError",
    "UnsafeCheckpointError",
    "UnsupportedError",
    "pip_install",
]


class OmnizooError(Exception):
    """Base class of every error omnizoo raises on purpose."""


class UnknownModelError(OmnizooError, LookupError):
    """A model name that no source knows. ``suggestions`` holds close matches."""

    def __init__(self, name: str, suggestions: Sequence[str] = (), message: str | None = None):
        self.name = name
        self.suggestions = tuple(suggestions)
        if message is None:
            message = f"unknown model {name!r}"
            if self.suggestions:
                message += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
            else:
                message += "; `omnizoo list` or omnizoo.list_models() shows every name"
        super().__init__(message)

    def __str__(self) -> str:  # LookupError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class UnknownSourceError(UnknownModelError):
    """A ``source:`` prefix that is not one of :func:`omnizoo.list_sources`."""


class InvalidNameError(OmnizooError, ValueError):
    """A model name that does not follow ``[source:]arch[.tag]``."""


class NoPretrainedWeightsError(OmnizooError, LookupError):
    """The architecture exists but has no pretrained weights (or not the tag asked for)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(OmnizooError, ValueError):
    """A bad ``OMNIZOO_*`` value, or arguments that contradict each other."""


class LockFileError(ConfigurationError):
    """A weights lock file (``OMNIZOO_LOCK``, ``lock=``) that is missing or malformed."""


class UnsupportedError(OmnizooError, ValueError):
    """A well-formed request this model or source cannot honour (e.g. features_only on ONNX)."""


class DependencyError(OmnizooError, ImportError):
    """An optional library needed for this call is not installed; the message says the
    ``pip install`` that adds it (:func:`pip_install`)."""

    def __str__(self) -> str:  # ImportError's would be fine; keep every error's str() alike
        return str(self.args[0]) if self.args else ""


def pip_install(extra: str) -> str:
    """The command that installs one optional part of omnizoo (its pip extra).

    >>> pip_install("timm")
    'pip install "omnizoo[timm]"'
    """
    return f'pip install "omnizoo[{extra}]"'


class DownloadError(OmnizooError, OSError):
    """The file could not be fetched (after retries and mirrors)."""

    def __init__(self, message: str, url: str | None = None):
        super().__init__(message)
        self.url = url

    def __str__(self) -> str:  # OSError's __str__ would drop the message when errno is unset
        return str(self.args[0]) if self.args else ""


class RemoteNotFoundError(DownloadError):
    """The server answered 404/403/410: the URL is wrong or withdrawn; no retry helps."""


class OfflineError(DownloadError):
    """``OMNIZOO_OFFLINE=1`` is set and the file is not in the cache."""


class IntegrityError(OmnizooError, OSError):
    """Bytes arrived but are not the expected file. Nothing of them entered the cache."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HashMismatchError(IntegrityError):
    """The sha256 (full or filename prefix) or the size differs from the expected one."""


class NotAWeightsFileError(IntegrityError):
    """The content is an HTML page, a Git-LFS pointer or similar, not a checkpoint."""


class FormatMismatchError(IntegrityError):
    """The content is another serialisation than the card declares (e.g. a pickle served for a
    safetensors card). ``declared`` and ``found`` name both."""

    def __init__(self, message: str, declared: str | None = None, found: str | None = None):
        super().__init__(message)
        self.declared = declared
        self.found = found


class UnpinnedError(IntegrityError):
    """The expected hash of a file is unknown where one is required: a file that would come
    from a mirror (OMNIZOO_MIRRORS, HF_ENDPOINT). The message says how to pin it."""


class NotInLockError(UnpinnedError):
    """A weights lock file is in force and does not list this name or URL."""


class CacheError(OmnizooError, OSError):
    """The cache directory cannot be used, or one of its entries is corrupted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(OmnizooError, ValueError):
    """A checkpoint cannot be read or does not fit the model it is loaded into."""


class MetadataError(OmnizooError, ValueError):
    """A file's content (a field of a card.json, .onnx metadata, a label file, a timing
    record) is malformed, of the wrong type or out of range. ``path`` names the file and
    ``field`` the offending field (None when the file as a whole is unreadable)."""

    def __init__(self, path: str, field: str | None, problem: str):
        self.path = path
        self.field = field
        self.problem = problem
        where = f"{path}: field {field!r}" if field else path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str | None, str]]:
        # Survives pickling (a Ray worker's error reaches the driver as itself).
        return (type(self), (self.path, self.field, self.problem))

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint needs arbitrary unpickling, which omnizoo refuses by default."""


class ImageLoadError(OmnizooError, OSError):
    """One image could not be decoded (corrupt, truncated, decompression bomb, ...)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BackendError(OmnizooError, RuntimeError):
    """The inference backend (onnxruntime) could not load or run the model."""


class ExportError(OmnizooError, RuntimeError):
    """Export failed, or the exported file's outputs differ from the model's."""
