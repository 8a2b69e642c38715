"""What happened to every tensor when weights were loaded: :class:`LoadReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def __repr__(self) -> str:  # counts, not every key: a ResNet has hundreds
        from ..values.display import one_line

        return one_line(
            "LoadReport",
            None,
            [
                ("source_file", self.source_file),
                ("loaded", len(self.loaded)),
                ("adapted", len(self.adapted)),
                ("reinitialized", len(self.reinitialized)),
                ("missing", len(self.missing)),
                ("unexpected", len(self.unexpected)),
            ],
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from ..values.display import pretty_lines

        pretty_lines(p, cycle, "LoadReport", str(self).splitlines())

    def _repr_html_(self) -> str:
        from ..values.display import clip, html_table

        rows: list[tuple[str, Any]] = [("file", self.source_file)]
        for label, keys in (
            ("loaded", self.loaded),
            ("adapted", self.adapted),
            ("re-initialised", self.reinitialized),
            ("missing", self.missing),
            ("unexpected", self.unexpected),
        ):
            shown = clip(
                ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else ""), 200
            )
            rows.append((label, f"{len(keys)}" + (f": {shown}" if keys else "")))
        rows += [("note", n) for n in self.notes]
        return html_table(rows, title="LoadReport")

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
