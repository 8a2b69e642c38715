"""The run directory of :func:`omnizoo.finetune.fit` (``omnizoo finetune --out DIR``).

::

    DIR/
      .omnizoo-finetune     marker: omnizoo made this folder (nothing else is ever written to)
      last.pt               the checkpoint: weights, optimizer, schedule, EMA, scaler, RNG
                            states, the step within the epoch, the history (written every
                            epoch, on SIGTERM and at the end)
      best/                 the best epoch so far, a save_pretrained folder: create_model(DIR/best)
      metrics.jsonl         one JSON object per finished epoch
      bad_images.jsonl      images that could not be read (skipped)
      curves.png            loss and accuracy per epoch (when matplotlib is installed)

Every file is replaced atomically (a temporary file in the folder, then a rename), so a crash
never leaves half a file. ``best/`` is written beside it (in ``.best.new``) and swapped in with
two renames; a crash between them leaves ``.best.old``, which :meth:`RunDir.claim` puts back:
the best model is never lost.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigurationError
from ..weights import fsafe

__all__ = ["MARKER", "RunDir"]

MARKER = ".omnizoo-finetune"
_MARKER_FORMAT, _MARKER_VERSION = "omnizoo.finetune-run", 1
_MARKER_DOC = {"format": _MARKER_FORMAT, "version": _MARKER_VERSION}
CHECKPOINT = "last.pt"
BEST = "best"


class RunDir:
    """One fine-tuning run's folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / BEST

    def claim(self, *, resume: bool) -> bool:
        """Make the folder ours; returns whether there is a checkpoint to resume from.

        A missing or empty folder becomes a run folder. A non-empty folder without the marker
        is refused (omnizoo never writes into a folder it did not create); one with the marker
        is refused too unless ``resume``.

        Raises:
            ConfigurationError: the folder is not empty and not ours, or holds a run and
                ``resume`` is not set, or ``resume`` with no checkpoint in it.
        """
        p = self.path
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise ConfigurationError(f"--out {p}: not a folder; give a new folder for the run")
        entries = sorted(os.listdir(p)) if p.is_dir() else []
        if entries and MARKER not in entries:
            raise ConfigurationError(
                f"--out {p} is not empty and was not made by omnizoo finetune ({len(entries)} "
                "entries, no .omnizoo-finetune marker); give a new or empty folder"
            )
        if not entries:
            if resume:
                raise ConfigurationError(f"--resume: {p} holds no run yet; drop --resume")
            p.mkdir(parents=True, exist_ok=True)
            fsafe.write_atomic(p / MARKER, json.dumps(_MARKER_DOC).encode())
            return False
        self._check_marker()
        self._recover_best()
        if not resume:
            raise ConfigurationError(
                f"--out {p} already holds a fine-tuning run; add --resume to continue it, or "
                "give another folder"
            )
        if fsafe.lstat_regular(self.checkpoint) is None:
            raise ConfigurationError(
                f"--resume: {p} has no {CHECKPOINT} (the run stopped before its first "
                "checkpoint); start it again in a new folder"
            )
        return True

    def _check_marker(self) -> None:
        from ..schema import Fields, parse_json

        raw = fsafe.read_input(self.path / MARKER, 4096)
        doc = Fields(parse_json(raw, str(self.path / MARKER)), self.path / MARKER)
        if doc.text("format", max_len=64) != _MARKER_FORMAT:
            raise doc.error("format", "not an omnizoo finetune run marker")
        doc.integer("version", lo=1, hi=_MARKER_VERSION)

    def _recover_best(self) -> None:
        old = self.path / ".best.old"
        if old.is_dir() and not old.is_symlink() and not self.best.exists():
            os.replace(old, self.best)

    # -- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """``torch.save`` ``state`` to ``last.pt`` atomically."""
        import torch

        self._atomic(self.checkpoint, lambda f: torch.save(dict(state), f))

    def load_checkpoint(self) -> dict[str, Any]:
        """``last.pt`` read safely (``weights_only``: tensors and plain values only).

        Raises:
            CheckpointError: the file cannot be read as a checkpoint.
        """
        import torch

        try:
            fd = fsafe.open_regular(self.checkpoint)
            with os.fdopen(fd, "rb") as f:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as exc:
            raise CheckpointError(
                f"{self.checkpoint}: cannot be read as a checkpoint ({exc}); start again in a "
                "new folder"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != "omnizoo.finetune":
            raise CheckpointError(f"{self.checkpoint}: not an omnizoo finetune checkpoint")
        return state

    def save_best(self, write: Callable[[Path], Any]) -> None:
        """Replace ``best/`` by what ``write(folder)`` writes into a fresh folder."""
        staging, old = self.path / ".best.new", self.path / ".best.old"
        for stale in (staging, old):
            _remove_tree(stale)
        staging.mkdir()
        # written as .best.new/best: save_pretrained names the model after its folder
        write(staging / BEST)
        if self.best.is_dir() and not self.best.is_symlink():
            os.replace(self.best, old)
        os.replace(staging / BEST, self.best)
        _remove_tree(old)
        _remove_tree(staging)

    # -- records ------------------------------------------------------------------------------

    def write_jsonl(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        text = "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in rows)
        fsafe.write_atomic(self.path / name, text.encode("utf-8"))

    def write_curves(self, history: Sequence[Mapping[str, Any]]) -> bool:
        """``curves.png``: losses and top-1 per epoch; False when matplotlib is missing."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib.figure import Figure
        except ImportError:
            return False
        epochs = [int(h["epoch"]) for h in history]
        fig = Figure(figsize=(9, 3.5))
        loss_ax, acc_ax = fig.subplots(1, 2)
        for key, ax in (("train_loss", loss_ax), ("val_loss", loss_ax)):
            ax.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
        for key in ("train_top1", "val_top1"):
            acc_ax.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
        for ax, title in ((loss_ax, "loss"), (acc_ax, "top-1 (%)")):
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        fsafe.write_atomic(self.path / "curves.png", buf.getvalue())
        return True

    def _atomic(self, path: Path, write: Callable[[Any], Any]) -> None:
        tmp = path.with_name(f".{path.name}.{fsafe.HOST}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = fsafe.create_new(tmp)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _remove_tree(path: Path) -> None:
    """Remove a folder this run wrote (``.best.new``/``.best.old``); a symlink only unlinked."""
    if path.is_symlink() or path.is_file():
        fsafe.remove(path)
    elif path.is_dir():
        shutil.rmtree(path)
