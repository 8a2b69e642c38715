"""What the installed libraries can do, for tests of features that need a newer release than
pyproject's lower bound (``make test-oldest`` runs the suite on the bounds): one marker per
feature, so a test skips with the reason there and runs everywhere else."""

from __future__ import annotations

import pytest


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
