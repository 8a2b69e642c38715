"""``validate(..., engine="ray")``: the images predicted on Ray actors by
:func:`.distributed.predict_ray` (the engine behind ``omnizoo predict --engine ray``), their
rows turned into the validation log's rows as each batch arrives.

Ray's rows carry each image's top 5 (indices and probabilities), so the probability of the
true class is known when it is among them and recorded as 0 otherwise. Ray's own output file
(``ray_rows.jsonl`` in ``out``) is scratch: it is started afresh each run, since the
validation log says which images are done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .validate_log import PredictionLog, Row

__all__ = ["run_ray"]


def run_ray(
    model: Any,
    todo: list[tuple[str, Any]],
    want: dict[str, int],
    predictor_kwargs: dict[str, Any],
    out: Path,
    logfile: PredictionLog | None,
    progress: str,
    done: int,
) -> list[Row]:
    """Predict ``todo`` (``(key, LabelledImage)``) on Ray; returns (and logs) the rows."""
    from .distributed import predict_ray

    if not todo:
        return []
    kwargs = {k: v for k, v in predictor_kwargs.items() if v is not None}
    batch_size = int(kwargs.pop("batch_size", 32))
    if kwargs.get("device") == "auto":
        kwargs.pop("device")  # each actor: its CPU, or its GPU
    if kwargs.get("checkpoint_path"):  # each actor runs in its own folder
        kwargs["checkpoint_path"] = os.path.abspath(kwargs["checkpoint_path"])
    by_path = {os.path.abspath(item.path): (key, item) for key, item in todo}
    rows: list[Row] = []

    def on_rows(batch: list[dict[str, Any]]) -> None:
        new: list[Row] = []
        for r in batch:
            key, item = by_path[os.path.abspath(r["path"])]
            if r.get("error") is not None:
                new.append(Row(key, item.label, error=str(r["error"])))
                continue
            indices = [int(i) for i in r["indices"]]
            scores = [float(s) for s in r["scores"]]
            target = want[item.label]
            p_true = scores[indices.index(target)] if target in indices else 0.0
            new.append(Row(key, item.label, tuple(indices[:5]), min(1.0, max(0.0, p_true))))
        if logfile is not None:
            logfile.append(new)
        rows.extend(new)

    predict_ray(
        model,
        list(by_path),
        out / "ray_rows.jsonl",
        topk=5,
        predictor_kwargs=kwargs,
        batch_size=batch_size,
        overwrite=True,
        progress=progress,
        on_rows=on_rows,
    )
    return rows
