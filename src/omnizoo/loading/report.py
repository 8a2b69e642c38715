"""What happened to every tensor when weights were loaded: :class:`LoadReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LoadReport"]


@dataclass
class LoadReport:
    """What happened to each parameter when weights were loaded into a model.

    ``loaded``: copied as is; ``adapted``: reshaped to fit (e.g. stem conv summed/repeated for
    ``in_chans``); ``reinitialized``: left at fresh init on purpose (a new head for
    ``num_classes``); ``missing``: model keys the checkpoint lacked; ``unexpected``: checkpoint
    keys the model has no place for.

    >>> from omnizoo import LoadReport
    >>> LoadReport(loaded=["fc.weight"], missing=["fc.bias"]).ok
    False

    Raises:
        Nothing: a record of what happened; ``create_model`` raises before it would hold
            an error (with ``strict=True``).
    """

    source_file: str | None = None
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was missing or unexpected (adapted/re-initialised are on purpose)."""
        return not self.missing and not self.unexpected

    def summary(self) -> str:
        """One line: counts per outcome."""
        parts = [
            f"{len(self.loaded)} loaded",
            f"{len(self.adapted)} adapted",
            f"{len(self.reinitialized)} re-initialised",
            f"{len(self.missing)} missing",
            f"{len(self.unexpected)} unexpected",
        ]
        return ", ".join(parts)

    def __str__(self) -> str:
        lines = [self.summary()]
        for label, keys in (
            ("adapted", self.adapted),
            ("re-initialised", self.reinitialized),
            ("missing", self.missing),
            ("unexpected", self.unexpected),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)
