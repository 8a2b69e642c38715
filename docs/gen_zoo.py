"""MkDocs hook: the zoo browser (``zoo.md`` and its data script ``zoo-data.js``), generated at
every build from the card indexes by :func:`omnizoo.overview.zoo.zoo_files`; the page shows the
zoo plot (``models/zoo.png``, written by ``python -m omnizoo.overview.tables docs/models``) when
it is there."""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

PLOT = "models/zoo.png"


def on_files(files: Files, config: Any) -> Files:
    from omnizoo.overview.zoo import zoo_files

    plot = PLOT if files.get_file_from_path(PLOT) is not None else None
    for name, content in zoo_files(plot).items():
        files.append(File.generated(config, name, content=content))
    return files
