"""The source-adapter protocol: what every model source (torchvision, timm, ...) provides.

An adapter has two halves:

* **metadata** — :meth:`SourceAdapter.build_cards` turns what the installed library declares
  into :class:`~omnizoo.values.card.ModelCard` objects. The registry caches the result on disk
  per (source, library version), so this runs (and imports the library) once per upgrade.
* **building** — :meth:`SourceAdapter.create` builds the architecture for a card and loads a
  verified local weights file into it, adapting ``num_classes`` / ``in_chans`` the same way for
  every source, and returns a :class:`LoadReport` saying what happened to every key.

The build path is shared: reading checkpoints safely, stem/head surgery, meta-device builds and
the one fit policy live in :mod:`omnizoo.loading`; adapters call them and add only their
quirks. Adapters return models as upstream does (train mode, upstream's ``feature_info`` API).
"""

from __future__ import annotations

import abc
import functools
import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..loading.report import LoadReport
from ..loading.request import CreateRequest
from ..values.card import ModelCard

if TYPE_CHECKING:
    import torch

    from ..errors import OmnizooError

__all__ = ["INDEX_SCHEMA", "CreateRequest", "LoadReport", "SourceAdapter", "torch_version"]


class SourceAdapter(abc.ABC):
    """One model source. Subclasses live in ``omnizoo.sources.<name>``."""

    #: The source prefix in model names ("torchvision", "timm", ...).
    name: ClassVar[str]
    #: The PyPI distribution whose version keys the on-disk card index.
    distribution: ClassVar[str]
    #: Top-level modules the source needs, checked without importing them (:meth:`missing`).
    requires: ClassVar[tuple[str, ...]] = ()
    #: The omnizoo pip extra that installs them (``"timm"``: ``pip install "omnizoo[timm]"``);
    #: None for a source of the core install or of another package.
    extra: ClassVar[str | None] = None
    #: Whether the card index is cached on disk. False: cards exist only in this process, and
    #: :meth:`build_cards` must be cheap and build no model (it runs in every process).
    persistent: ClassVar[bool] = True

    def missing(self) -> tuple[str, ...]:
        """The modules of :attr:`requires` that are not installed (found with
        ``importlib.util.find_spec``, which imports nothing). A source with missing modules
        lists no models, and its names raise :class:`~omnizoo.errors.DependencyError` with
        :meth:`install_hint`."""
        cached = self.__dict__.get("_missing")
        if cached is None:
            cached = tuple(m for m in self.requires if not _importable(m))
            self.__dict__["_missing"] = cached
        return cached

    def install_hint(self) -> str:
        """The command that installs what :meth:`missing` lists."""
        from ..errors import pip_install

        if self.extra:
            return pip_install(self.extra)
        return "pip install " + " ".join(self.missing() or self.requires or (self.distribution,))

    def session_cards(self) -> tuple[ModelCard, ...]:
        """Cards that exist only in this process and are never cached on disk: models
        registered at run time (``omnizoo.register_model``, timm's ``@register_model`` in user
        code). The registry adds them to the source's index on every lookup. Return the same
        tuple object while nothing changed (the merged index is reused then). Default: none."""
        return ()

    #: Whether :meth:`meta_model` builds torch models whose parameters and GFLOPs the index
    #: counts where the source publishes none.
    countable: ClassVar[bool] = True

    def version(self) -> str:
        """Installed version of the library behind this source (no import of it)."""
        fast = _dist_info_version(self.distribution)
        if fast is not None:
            return fast
        import importlib.metadata

        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not-installed"

    def index_key(self) -> str:
        """What the cached card index depends on: the library's version, torch's (parameter
        counts and GFLOPs are counted with it) and ``INDEX_SCHEMA`` (bump it when card code
        changes)."""
        return f"{self.name}-{self.version()}-torch{torch_version()}-schema{INDEX_SCHEMA}"

    def listing_problem(self) -> OmnizooError | None:
        """Why this source lists nothing right now (a missing manifest), as the error a name
        of this source should raise instead of "unknown model"; None when it lists normally."""
        return None

    def meta_model(self, card: ModelCard) -> torch.nn.Module:
        """``card``'s architecture built on the meta device (no weights, no memory), as the
        card's weights expect it (head size, image size), for counting parameters and GFLOPs.
        Called inside :func:`omnizoo.sources.param_flops.meta_build`. Default: unsupported."""
        from ..errors import UnsupportedError

        raise UnsupportedError(f"the {self.name} source builds no torch model to count")

    @abc.abstractmethod
    def build_cards(self) -> list[ModelCard]:
        """Every architecture of the source, as cards.

        One card per set of weights (exactly one per architecture with ``is_default=True``),
        and one ``tag=None`` card for each architecture that has no weights at all. Imports the
        source library; the registry caches the result.
        """

    @abc.abstractmethod
    def create(self, card: ModelCard, request: CreateRequest) -> tuple[Any, LoadReport]:
        """Build ``card``'s architecture and load ``request.weights_path`` into it, if given.

        Must honour ``num_classes``, ``in_chans``, ``strict``, ``device``/``dtype`` (at build
        time) and ``features_only``/``out_indices`` (timm's meaning) through the build
        skeleton (:func:`omnizoo.loading.build.build_model`), or raise
        :class:`~omnizoo.errors.UnsupportedError` naming the source. Returns an ``nn.Module``
        (or, for ONNX, a module-like object) in the mode upstream returns it (train).
        """

    def resolve(
        self, card: ModelCard, request: CreateRequest
    ) -> tuple[ModelCard | str, CreateRequest]:
        """Read source-specific arguments that change *which* weights load (timm's
        ``pretrained_cfg``/``pretrained_cfg_overlay``, torchvision's ``weights``) before
        anything is downloaded. Returns the card to build (or a model name to resolve instead)
        and the request. Default: unchanged."""
        return card, request

    def external_card(self, scheme: str, identifier: str) -> ModelCard:
        """The card of a model named by location (timm's ``hf-hub:org/repo``,
        ``local-dir:/path``) rather than by the registry."""
        from ..errors import UnsupportedError

        raise UnsupportedError(f"the {self.name} source cannot read {scheme}: names")

    def check_request(self, card: ModelCard, request: CreateRequest) -> None:
        """Raise before any download when ``request`` cannot be honoured for ``card``.

        ``create_model`` calls this first, so a request that is bound to fail (an ONNX graph
        onnxruntime cannot load, an unsupported option) costs no download. Default: no check.
        """
        return None

    def default_cfg_for_model(self, model: torch.nn.Module) -> ModelCard | None:
        """A card for a model built outside omnizoo, when the source can tell (optional)."""
        return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_version() -> str:
    """The installed torch's version, without importing torch (a directory listing)."""
    found = _dist_info_version("torch")
    if found is not None:
        return found
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "not-installed"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@functools.cache
def _dist_info_version(distribution: str) -> str | None:
    """The version in the name of the ``<dist>-<version>.dist-info`` folder beside the
    installed package, or None (then ``importlib.metadata`` decides).

    Why: ``import importlib.metadata`` alone costs ~30 ms, a third of a fresh process's
    ``list_models()``; this reads one directory listing. Anything unusual (no such folder, two
    of them, a namespace or zipped package) falls back to importlib.metadata. Cached for the
    process: a listing that reads every card asks once per card (a 1,500-row table listed the
    site-packages folder 3,000 times, 4 s), and the libraries already imported cannot change.
    """
    try:
        spec = importlib.util.find_spec(distribution.replace("-", "_"))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    locations = list(spec.submodule_search_locations)
    if len(locations) != 1:
        return None
    site = Path(locations[0]).parent
    want = _normalise(distribution)
    try:
        found = [
            entry.name[: -len(".dist-info")].partition("-")[2]
            for entry in site.iterdir()
            if entry.name.endswith(".dist-info")
            and _normalise(entry.name.partition("-")[0]) == want
        ]
    except OSError:
        return None
    return found[0] if len(found) == 1 and found[0] else None


#: Bumped whenever card-building code changes what cards contain, to invalidate disk caches.
INDEX_SCHEMA = 4
