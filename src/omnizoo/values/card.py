"""ModelCard: everything known about one (architecture, weights) pair, as plain frozen data.

Cards are built by the source adapters from what the installed libraries declare, cached on
disk as JSON (see :mod:`omnizoo.registry.registry`), and never import torch.

>>> from omnizoo.values.card import ModelCard
>>> card = ModelCard(source="timm", arch="resnet50", tag="a1_in1k")
>>> card.name
'timm:resnet50.a1_in1k'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .data_config import DataConfig

__all__ = [
    "CLASSIFICATION_TASKS",
    "GENERIC_LABELS",
    "OUTPUTS",
    "TASKS",
    "WEIGHT_FORMATS",
    "ModelCard",
    "Output",
    "Task",
    "WeightFormat",
    "WeightsFile",
    "format_of_name",
    "is_classification",
]

#: The ``label_set`` of a model whose classes have no names (a head of another size, with no
#: labels given): ``get_labels`` says ``class_0 .. class_{n-1}``.
GENERIC_LABELS = "generic"

#: The formats of a weights file (``WeightsFile.format``); the one list, for annotations
#: (``WeightFormat``) and run-time checks (``WEIGHT_FORMATS``, derived from it).
WeightFormat = Literal["pickle", "safetensors", "onnx", "npz"]
WEIGHT_FORMATS: tuple[WeightFormat, ...] = get_args(WeightFormat)

#: What a classifier's output is (``ModelCard.output``): raw logits, or probabilities (a graph
#: that ends in a softmax).
Output = Literal["logits", "probabilities"]
OUTPUTS: tuple[Output, ...] = get_args(Output)
_SUFFIX_FORMATS: tuple[tuple[str, WeightFormat], ...] = (
    (".safetensors", "safetensors"),
    (".npz", "npz"),
    (".onnx", "onnx"),
)


#: The tasks whose output is one score per class (labels, top-k, heads apply).
CLASSIFICATION_TASKS: tuple[Task, ...] = ("classification", "quantized_classification")


def is_classification(task: str | None) -> bool:
    """Whether ``task`` scores classes (the one place this is decided).

    >>> is_classification("quantized_classification"), is_classification("detection")
    (True, False)
    """
    return task in CLASSIFICATION_TASKS


def format_of_name(filename: str) -> WeightFormat:
    """The weights format a file name declares (``pickle`` unless its suffix says otherwise).

    >>> format_of_name("model.safetensors"), format_of_name("resnet50-0676ba61.pth")
    ('safetensors', 'pickle')
    """
    lower = filename.lower()
    return next((fmt for suffix, fmt in _SUFFIX_FORMATS if lower.endswith(suffix)), "pickle")


#: A model's task (``ModelCard.task``, ``list_models(task=...)``, ``register_model(task=...)``,
#: ``Predictor(task=...)``): the one list, for annotations (``Task``) and run-time checks
#: (``TASKS``, derived from it).
Task = Literal[
    "classification",
    "detection",
    "segmentation",
    "keypoints",
    "video",
    "optical_flow",
    "quantized_classification",
    "features",
]
TASKS: tuple[Task, ...] = get_args(Task)


@dataclass(frozen=True)
class WeightsFile:
    """Where the bytes of a set of weights live and how to check them.

    ``urls`` is a mirror chain tried in order (before OMNIZOO_MIRRORS rewrites are added).
    ``sha256`` is the full digest where the source gives one (ONNX zoo); otherwise
    ``hash_prefix`` is the hex prefix in the file name (torch.hub's convention).

    >>> from omnizoo import WeightsFile
    >>> w = WeightsFile(urls=("https://download.pytorch.org/models/resnet18-f37072fd.pth",),
    ...                 filename="resnet18-f37072fd.pth", hash_prefix="f37072fd")
    >>> w.url.rsplit("/", 1)[-1], w.format
    ('resnet18-f37072fd.pth', 'pickle')

    Raises:
        Nothing: plain data; fields read from files are validated where they are read
        (:mod:`omnizoo.values.card_fields`).
    """

    urls: tuple[str, ...]
    filename: str
    sha256: str | None = None
    hash_prefix: str | None = None
    size: int | None = None
    format: WeightFormat = "pickle"
    # Hugging Face repo the file came from (timm), for HF_ENDPOINT rewriting and docs.
    hf_hub_id: str | None = None
    # On a card derived for a model in hand (omnizoo.registry.derive): where these bytes are
    # ("published": at ``urls``; "local": a file the user gave, no upstream URL; "saved": the
    # file of a save_pretrained folder) and how they were checked (a state of
    # omnizoo.weights.verification for a download; "unverified" for a local file; "recorded":
    # matched the sha256 save_pretrained wrote beside it). None on registry cards.
    origin: str | None = None
    verification: str | None = None

    @property
    def url(self) -> str:
        """The primary URL."""
        return self.urls[0]


@dataclass(frozen=True)
class ModelCard:
    """One architecture with one set of weights (``tag`` None: the bare architecture).

    >>> from omnizoo import ModelCard
    >>> ModelCard(source="torchvision", arch="resnet18", tag="IMAGENET1K_V1").name
    'torchvision:resnet18.IMAGENET1K_V1'

    Raises:
        Nothing: plain data; fields read from files are validated where they are read
        (:mod:`omnizoo.values.card_fields`).
    """

    source: str
    arch: str
    tag: str | None = None
    task: Task = "classification"
    weights: WeightsFile | None = None
    # True on the tag a bare ``source:arch`` resolves to.
    is_default: bool = False
    num_classes: int = 1000
    # A named label set ("imagenet-1k", ...) resolved by omnizoo.data.labels, or inline
    # categories for other sets (COCO, VOC, Kinetics...).
    label_set: str | None = None
    categories: tuple[str, ...] | None = None
    # 1 when the weights have a leading "background" class (1001-way TF/Cadene heads).
    label_offset: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    # "logits" or "probabilities" (softmax in the graph: some ONNX zoo models).
    output: Output = "logits"
    top1: float | None = None
    top5: float | None = None
    metrics_dataset: str | None = None
    # Other metrics the source publishes (box_map, miou, epe, ...), name -> value.
    extra_metrics: tuple[tuple[str, float], ...] = ()
    num_params: int | None = None
    # Billions of multiply-accumulates for one image at ``data.input_size``: the convention of
    # torchvision's ``_ops``, timm's GMACs and most papers' "FLOPs" (one fused multiply-add
    # counts once; torch.utils.flop_counter counts it twice and is halved).
    gflops: float | None = None
    # Where each metric came from: (field, source), e.g. ("top1", "timm results-imagenet.csv
    # ..."), ("gflops", "counted: ..."). Every metric a card carries is cited here.
    provenance: tuple[tuple[str, str], ...] = ()
    license: str | None = None
    paper: str | None = None
    origin: str | None = None
    # State-dict key prefixes of the stem conv and the classifier head(s), as timm names them
    # ("conv1", "fc"; a tuple for multi-head models). Used to adapt in_chans / num_classes.
    first_conv: str | None = None
    classifier: tuple[str, ...] = ()
    # Free-form facts that matter to a user: upstream quirks handled, unverified preprocessing.
    notes: tuple[str, ...] = ()
    # Where a model in hand came from ("from", "summary", ...; see omnizoo.registry.derive);
    # empty on registry cards. JSON-able values only.
    lineage: Mapping[str, Any] = field(default_factory=dict)
    # Source-specific data the adapter needs to build/load (JSON-able values only).
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Fully qualified ``source:arch[.tag]``."""
        return f"{self.source}:{self.arch}" + (f".{self.tag}" if self.tag else "")

    def cited(self, field_name: str) -> str | None:
        """Where the value of ``field_name`` (``"top1"``, ``"num_params"``, ...) came from.

        >>> ModelCard(source="timm", arch="x", provenance=(("top1", "a table"),)).cited("top1")
        'a table'
        """
        return dict(self.provenance).get(field_name)

    def metric(self, key: str) -> float | None:
        """One metric by name: ``top1``, ``top5``, ``params`` (millions), ``gflops``, or a key
        of ``extra_metrics`` (``"imagenet-real:top1"``, ``"box_map"``, ...).

        >>> ModelCard(source="timm", arch="x", num_params=25_557_032).metric("params")
        25.557032
        """
        if key in ("top1", "top5", "gflops"):
            value = getattr(self, key)
            return None if value is None else float(value)
        if key == "params":
            return None if self.num_params is None else self.num_params / 1e6
        return dict(self.extra_metrics).get(key)

    @property
    def pretrained(self) -> bool:
        """Whether this card has weights to download."""
        return self.weights is not None

    # -- how a card shows itself (a dataclass repr ran to kilobytes on one line) ----------------
    def __repr__(self) -> str:
        from .display import one_line

        params = None if self.num_params is None else f"{self.num_params / 1e6:.1f}M"
        return one_line(
            "ModelCard",
            self.name,
            [
                ("task", self.task),
                ("classes", self.num_classes),
                ("top1", self.top1),
                ("params", params),
                ("gflops", self.gflops),
            ],
        )

    def display_rows(self) -> list[tuple[str, Any]]:
        """The card as (field, value) rows, for the pretty and HTML forms (None: not known)."""
        d, w = self.data, self.weights
        labels = self.label_set or ("inline" if self.categories else None)
        rows: list[tuple[str, Any]] = [
            ("name", self.name),
            ("task", self.task),
            ("classes", f"{self.num_classes}" + (f" ({labels})" if labels else "")),
            (
                "input",
                f"{d.input_size[1]}x{d.input_size[2]}, {d.interpolation}, crop_pct "
                f"{d.crop_pct:.3f}",
            ),
            ("top1", self.top1),
            ("top5", self.top5),
            ("params", None if self.num_params is None else f"{self.num_params / 1e6:.2f} M"),
            ("GFLOPs", self.gflops),
            ("weights", None if w is None else (w.url if w.urls else w.filename)),
            ("format", None if w is None else w.format),
            ("sha256", None if w is None else (w.sha256 or w.hash_prefix)),
            ("verified", None if w is None else w.verification),
            ("license", self.license),
            ("paper", self.paper),
            ("lineage", (self.lineage or {}).get("summary")),
        ]
        rows += [("note", note) for note in self.notes]
        return rows

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from .display import pretty_lines

        lines = [f"{k}: {v}" for k, v in self.display_rows() if v is not None]
        pretty_lines(p, cycle, "ModelCard", lines)

    def _repr_html_(self) -> str:
        from .display import html_table

        return html_table(self.display_rows(), title=f"ModelCard {self.name}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "data":
                value = value.to_dict()
            elif f.name == "weights" and value is not None:
                value = {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in dataclasses.asdict(value).items()
                }
            elif f.name in ("extra", "lineage"):
                value = dict(value)
            elif f.name in ("extra_metrics", "provenance"):
                value = [list(p) for p in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Rebuild a card from :meth:`to_dict` output."""
        kwargs = dict(data)
        kwargs["data"] = DataConfig.from_dict(kwargs.get("data") or {})
        w = kwargs.get("weights")
        if w is not None:
            w = dict(w)
            w["urls"] = tuple(w["urls"])
            kwargs["weights"] = WeightsFile(**w)
        for key in ("categories",):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        for key in ("classifier", "notes"):
            kwargs[key] = tuple(kwargs.get(key) or ())
        kwargs["extra_metrics"] = tuple(
            (str(k), float(v)) for k, v in kwargs.get("extra_metrics") or ()
        )
        kwargs["provenance"] = tuple((str(k), str(v)) for k, v in kwargs.get("provenance") or ())
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        kwargs["lineage"] = dict(kwargs.get("lineage") or {})
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names})
