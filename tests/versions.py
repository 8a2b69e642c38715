"""What the installed libraries can do, for tests of features that need a newer release than
pyproject's lower bound (``make test-oldest`` runs the suite on the bounds): one marker per
feature, so a test skips with the reason there and runs everywhere else."""

from __future__ import annotations

import importlib.metadata

import pytest

#: The versions the shipped data is for: the prebuilt card indexes (src/omnizoo/data/prebuilt)
#: and the timm tables (timm_results.json.gz, derived from the timm these index).
PINNED = {
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "timm": "1.0.31",
    "pretrainedmodels": "0.7.4",
    "efficientnet_pytorch": "0.7.1",
}


def is_pinned(*dists: str) -> bool:
    """Whether ``dists`` (all of :data:`PINNED` when none is named) are installed at their
    pinned versions (a local version label such as ``+cpu`` ignored)."""
    return all(importlib.metadata.version(d).split("+")[0] == PINNED[d] for d in (dists or PINNED))


def timm_reads_hub_configs() -> bool:
    """Whether the installed timm has the ``config.json`` reader that omnizoo's ``hf-hub:`` and
    ``local-dir:`` names use (timm >= 1.0.20; the floor, 1.0.9, has not)."""
    try:
        import timm.models._hub as hub
    except ImportError:
        return False
    return hasattr(hub, "_parse_model_cfg")


#: For tests of ``hf-hub:``/``local-dir:`` names (on older timm they raise DependencyError,
#: which tests/test_dropin.py checks there).
needs_timm_hub_names = pytest.mark.skipif(
    not timm_reads_hub_configs(), reason="hf-hub:/local-dir: names need timm >= 1.0.20"
)
