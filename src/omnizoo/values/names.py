"""The model-name grammar, parsed here and nowhere else::

    name     := [source ":"] body | [source ":"] scheme ":" location | "local:" folder
    body     := arch ["." tag]
    source   := torchvision | timm | cadene | efficientnet | onnx
    scheme   := hf-hub | local-dir          (timm's model sources; source defaults to timm)
    location := org/repo[@revision] | a folder path (taken as is)

Architecture names may themselves contain dots or dashes in some sources (ONNX zoo
``resnet50-v1-7``, EfficientNet ``efficientnet-b0``) while tags contain dots in others (timm
``vit_base_patch16_224.augreg2_in21k_ft_in1k``), so the split of ``body`` into arch and tag
cannot be made by syntax alone: :func:`split_body` lists every split, longest arch first, and
the registry keeps the first whose arch it knows.

>>> parse_name("timm:vit_base_patch16_224.augreg2_in21k_ft_in1k")
ParsedName(source='timm', body='vit_base_patch16_224.augreg2_in21k_ft_in1k', scheme=None)
>>> split_body("vit_base_patch16_224.augreg2_in1k")
[('vit_base_patch16_224.augreg2_in1k', None), ('vit_base_patch16_224', 'augreg2_in1k')]
>>> format_name("torchvision", "resnet50", "IMAGENET1K_V2")
'torchvision:resnet50.IMAGENET1K_V2'
>>> parse_name("hf-hub:timm/resnet18.a1_in1k@main")
ParsedName(source='timm', body='timm/resnet18.a1_in1k@main', scheme='hf-hub')
>>> local_location("local:~/runs/ft"), local_location("resnet50")
('~/runs/ft', None)

``local:<folder>`` names a fine-tune saved by ``omnizoo.save_pretrained`` (a ``card.json`` and
its weights); no source reads it, :mod:`omnizoo.saved.folder` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidNameError

__all__ = [
    "LOCAL_PREFIX",
    "SCHEMES",
    "ParsedName",
    "format_name",
    "local_location",
    "parse_name",
    "split_body",
    "strip_source",
]

#: Model sources named inside a name (timm's ``hf-hub:``/``local-dir:``) -> the source that
#: reads them. ``hf_hub`` is timm's deprecated spelling.
SCHEMES: dict[str, str] = {"hf-hub": "timm", "local-dir": "timm"}
_SCHEME_ALIASES = {"hf_hub": "hf-hub"}

#: The prefix of a folder written by ``omnizoo.save_pretrained``.
LOCAL_PREFIX = "local:"

#: Characters allowed in the body of a name (arch and tag).
_BODY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-+]*$")
_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ParsedName:
    """A name split at the source colon; ``source`` is None when the name has none."""

    source: str | None
    body: str
    #: ``hf-hub``/``local-dir``: ``body`` is a Hub repo id or a folder, not ``arch[.tag]``.
    scheme: str | None = None


def parse_name(name: str) -> ParsedName:
    """Split ``[source:]body`` and check the characters. Raises :class:`InvalidNameError`."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a model name must be a string, got {type(name).__name__}")
    text = name.strip()
    if not text:
        raise InvalidNameError("empty model name; expected [source:]arch[.tag], e.g. 'resnet50'")
    external = _parse_scheme(name, text)
    if external is not None:
        return external
    if text.count(":") > 1:
        raise InvalidNameError(
            f"{name!r} has more than one ':'; expected [source:]arch[.tag], "
            "e.g. 'timm:resnet50.a1_in1k'"
        )
    source: str | None = None
    body = text
    if ":" in text:
        source, body = text.split(":", 1)
        source = source.strip().lower()
        body = body.strip()
        if not source or not _SOURCE_RE.match(source):
            raise InvalidNameError(f"{name!r}: {source!r} is not a valid source prefix")
    if not body:
        raise InvalidNameError(f"{name!r} names a source but no architecture")
    if not _BODY_RE.match(body) or ".." in body or body.endswith("."):
        raise InvalidNameError(
            f"{name!r}: an architecture/tag may use letters, digits, '_', '-', '+' and one or "
            "more '.' between parts"
        )
    return ParsedName(source, body)


def _parse_scheme(name: str, text: str) -> ParsedName | None:
    """``[source:]hf-hub:...`` / ``[source:]local-dir:...``, or None for other names."""
    head, _, rest = text.partition(":")
    source: str | None = None
    scheme = _SCHEME_ALIASES.get(head.lower(), head.lower())
    if scheme not in SCHEMES:
        inner, sep, location = rest.partition(":")
        inner = _SCHEME_ALIASES.get(inner.lower(), inner.lower())
        if not sep or inner not in SCHEMES:
            return None
        source, scheme, rest = head.strip().lower(), inner, location
    if not rest.strip():
        raise InvalidNameError(
            f"{name!r} has no {'repo id' if scheme == 'hf-hub' else 'folder'} after '{scheme}:'"
        )
    owner = SCHEMES[scheme]
    if source is not None and source != owner:
        raise InvalidNameError(f"{name!r}: {scheme}: names are read by the {owner} source")
    return ParsedName(owner, rest.strip(), scheme)


def split_body(body: str) -> list[tuple[str, str | None]]:
    """Every (arch, tag) reading of ``body``: the whole body as an arch first, then each split
    at a dot, moving left (longest arch first)."""
    out: list[tuple[str, str | None]] = [(body, None)]
    idx = len(body)
    while True:
        idx = body.rfind(".", 0, idx)
        if idx <= 0:
            break
        out.append((body[:idx], body[idx + 1 :]))
    return out


def format_name(source: str, arch: str, tag: str | None = None) -> str:
    """The fully qualified ``source:arch[.tag]``."""
    return f"{source}:{arch}" + (f".{tag}" if tag else "")


def strip_source(name: str) -> str:
    """``name`` without its ``source:`` prefix."""
    return name.split(":", 1)[1] if ":" in name else name


def local_location(name: str) -> str | None:
    """The folder of a ``local:<folder>`` name (as written), or None for any other name."""
    if not isinstance(name, str):
        return None
    text = name.strip()
    if not text.lower().startswith(LOCAL_PREFIX):
        return None
    location = text[len(LOCAL_PREFIX) :].strip()
    if not location:
        raise InvalidNameError(f"{name!r} has no folder after 'local:'")
    return location
