"""The cards of :func:`~omnizoo.sources.user.register_model`: its arguments checked and turned
into one :class:`~omnizoo.values.card.ModelCard` per set of weights (``user:<name>.<tag>``).

>>> card = base_card("doc_net", num_classes=2, labels=["no", "yes"], label_set=None,
...                  data={"input_size": (3, 8, 8)}, task="classification", classifier="fc",
...                  first_conv=None, license=None, paper=None, origin=None, notes=())
>>> (card.name, card.categories, card.data.input_size)
('user:doc_net', ('no', 'yes'), (3, 8, 8))
>>> [c.name for c in weight_cards(card, [{"tag": "v1", "url": "https://example.org/n.pth"}])]
['user:doc_net.v1']
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..values.card import TASKS, WEIGHT_FORMATS, ModelCard, WeightsFile, format_of_name
from ..values.data_config import DataConfig
from ..weights.hashing import normalize_sha256, parse_hash_prefix
from ..weights.local_files import file_url
from .table import USER_SOURCE

__all__ = ["arch_of", "base_card", "default_num_classes", "weight_cards"]

_ARCH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-+]*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-+]*$")
_WEIGHT_KEYS = frozenset(
    {
        "tag",
        "url",
        "urls",
        "file",
        "sha256",
        "size",
        "format",
        "filename",
        "labels",
        "label_set",
        "label_offset",
        "num_classes",
        "data",
        "default",
        "top1",
        "top5",
        "metrics_dataset",
        "license",
        "notes",
    }
)


def arch_of(name: str) -> str:
    if not isinstance(name, str):
        raise ConfigurationError(f"a model name must be a string, got {type(name).__name__}")
    source, sep, arch = name.strip().rpartition(":")
    if sep and source != USER_SOURCE:
        raise ConfigurationError(
            f"register_model({name!r}): registered models live in the {USER_SOURCE!r} source; "
            f"give a plain name (it becomes {USER_SOURCE}:{arch})"
        )
    if not _ARCH_RE.match(arch):
        raise ConfigurationError(
            f"register_model({name!r}): a name may use letters, digits, '_', '-' and '+' (no '.': "
            "it separates the weights tag)"
        )
    return arch


def default_num_classes(builder: Callable[..., Any]) -> int:
    """The ``num_classes`` default of the builder's signature, else 1000 (ImageNet's)."""
    try:
        param = inspect.signature(builder).parameters.get("num_classes")
    except (TypeError, ValueError):
        param = None
    default = None if param is None else param.default
    if isinstance(default, int) and not isinstance(default, bool):
        return default
    return 1000


def _data(value: DataConfig | Mapping[str, Any] | None) -> DataConfig:
    if value is None:
        return DataConfig()
    if isinstance(value, DataConfig):
        return value
    if isinstance(value, Mapping):
        try:
            return DataConfig.from_dict(dict(value))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"data={dict(value)!r} is not a DataConfig: {exc}") from exc
    raise ConfigurationError(f"data must be a DataConfig or a dict, got {type(value).__name__}")


def _labels(
    labels: Sequence[str] | None, n: int, offset: int, where: str
) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ConfigurationError(f"{where}: labels must be a list of names, not a string")
    out = tuple(str(label) for label in labels)
    if len(out) not in (n, n - offset):
        raise ConfigurationError(f"{where}: {len(out)} labels for {n} classes; give one per class")
    return out


def base_card(arch: str, **fields: Any) -> ModelCard:
    n = fields["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigurationError(f"num_classes must be an int >= 0, got {n!r}")
    if fields["task"] not in TASKS:
        raise ConfigurationError(f"task={fields['task']!r}; one of {', '.join(TASKS)}")
    head = fields["classifier"]
    heads = () if not head else (head,) if isinstance(head, str) else tuple(head)
    return ModelCard(
        source=USER_SOURCE,
        arch=arch,
        task=fields["task"],
        num_classes=n,
        label_set=fields["label_set"],
        categories=_labels(fields["labels"], n, 0, f"user:{arch}"),
        data=_data(fields["data"]),
        first_conv=fields["first_conv"],
        classifier=tuple(str(h) for h in heads),
        license=fields["license"],
        paper=fields["paper"],
        origin=fields["origin"],
        notes=tuple(str(n) for n in fields["notes"]),
        is_default=True,
    )


def weight_cards(base: ModelCard, weights: Sequence[Mapping[str, Any]]) -> tuple[ModelCard, ...]:
    if isinstance(weights, Mapping):
        weights = [weights]
    if not weights:
        return (base,)
    cards: list[ModelCard] = []
    defaults = [bool(w.get("default")) for w in weights]
    if sum(defaults) > 1:
        raise ConfigurationError(f"user:{base.arch}: more than one set of weights is the default")
    first_default = defaults.index(True) if any(defaults) else 0
    for i, spec in enumerate(weights):
        cards.append(_weight_card(base, spec, is_default=i == first_default))
    tags = [c.tag for c in cards]
    if len(set(tags)) != len(tags):
        raise ConfigurationError(f"user:{base.arch}: the weights tags {tags} are not unique")
    return tuple(cards)


def _weight_card(base: ModelCard, spec: Mapping[str, Any], *, is_default: bool) -> ModelCard:
    if not isinstance(spec, Mapping):
        raise ConfigurationError(f"user:{base.arch}: each weights entry is a dict, got {spec!r}")
    unknown = sorted(set(spec) - _WEIGHT_KEYS)
    if unknown:
        raise ConfigurationError(
            f"user:{base.arch}: unknown weights field(s) {unknown}; known: "
            + ", ".join(sorted(_WEIGHT_KEYS))
        )
    tag = spec.get("tag")
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ConfigurationError(
            f"user:{base.arch}: each weights entry needs a 'tag' (letters, digits, '_', '-', "
            f"'.'), got {tag!r}"
        )
    where = f"user:{base.arch}.{tag}"
    n = int(spec.get("num_classes", base.num_classes))
    offset = int(spec.get("label_offset", 0))
    return ModelCard(
        source=USER_SOURCE,
        arch=base.arch,
        tag=tag,
        task=base.task,
        weights=_weights_file(spec, where),
        is_default=is_default,
        num_classes=n,
        label_set=spec.get("label_set", base.label_set),
        categories=_labels(spec.get("labels"), n, offset, where)
        if "labels" in spec
        else (base.categories if n == base.num_classes else None),
        label_offset=offset,
        data=_data(spec["data"]) if "data" in spec else base.data,
        top1=spec.get("top1"),
        top5=spec.get("top5"),
        metrics_dataset=spec.get("metrics_dataset"),
        license=spec.get("license", base.license),
        paper=base.paper,
        origin=base.origin,
        first_conv=base.first_conv,
        classifier=base.classifier,
        notes=(*base.notes, *(str(x) for x in spec.get("notes", ()))),
    )


def _weights_file(spec: Mapping[str, Any], where: str) -> WeightsFile:
    sha256 = spec.get("sha256")
    if sha256 is not None:
        try:
            sha256 = normalize_sha256(str(sha256))
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    given = [k for k in ("url", "urls", "file") if spec.get(k)]
    if len(given) != 1:
        raise ConfigurationError(f"{where}: give exactly one of url, urls or file")
    if "file" in given:
        path = Path(spec["file"]).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"{where}: the weights file {path} does not exist")
        urls: tuple[str, ...] = (file_url(path),)
    else:
        raw = spec.get("urls") or (spec["url"],)
        urls = (raw,) if isinstance(raw, str) else tuple(str(u) for u in raw)
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigurationError(
                f"{where}: not http(s) URLs: {bad}; use file= for a local file"
            )
    filename = str(spec.get("filename") or urls[0].split("?", 1)[0].rsplit("/", 1)[-1])
    fmt = str(spec.get("format") or format_of_name(filename))
    if fmt not in WEIGHT_FORMATS:
        raise ConfigurationError(f"{where}: format={fmt!r}; one of {', '.join(WEIGHT_FORMATS)}")
    size = spec.get("size")
    return WeightsFile(
        urls=urls,
        filename=filename,
        sha256=sha256,
        hash_prefix=None if sha256 else parse_hash_prefix(filename),
        size=int(size) if size is not None else None,
        format=fmt,
    )
