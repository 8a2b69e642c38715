"""What the ONNX model zoo's manifest does not say: which entries are ImageNet classifiers,
and how each family of them wants its input.

The manifest (``ONNX_HUB_MANIFEST.json`` of github.com/onnx/models) lists every file with its
sha256, size, opset and io ports, but no preprocessing. The rules below were derived from the
manifest and the zoo's READMEs (paths relative to ``validated/vision/classification/`` at
onnx/models commit b1eeaa1a) and the third-party specs they point to; each family cites its
sources. Families whose sources disagree or are silent are marked ``verified=False`` and every
card of theirs carries a note saying so.

Selection: an entry is an ImageNet classifier when its ``model_path`` lies under
``[validated/]vision/classification/`` and it is neither MNIST (10 digits, 1x28x28 grey) nor a
preprocessing graph (``resnet/preproc/``, tagged ``preprocessing``). That gives 113 entries
(and excludes 6) in the pinned manifest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...values.data_config import IMAGENET_MEAN, IMAGENET_STD, DataConfig

__all__ = ["FAMILIES", "Family", "ZooEntry", "classify_manifest", "family_of"]

CLASSIFICATION_DIRS = ("validated/vision/classification/", "vision/classification/")
#: onnxruntime only guarantees opset >= 7 for the ai.onnx domain (its load-time warning says
#: so); the zoo's opset-3/6 Caffe2 conversions use operator versions it no longer implements.
MIN_ORT_OPSET = 7
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # = RGB (123.68, 116.779, 103.939) reversed
_CAFFE2_BGR_MEAN = (103.53, 116.28, 123.675)  # torchvision's mean x 255, BGR order
_CAFFE2_BGR_STD = (57.375, 57.12, 58.395)  # torchvision's std x 255, BGR order


@dataclass(frozen=True)
class Family:
    """A preprocessing family: the DataConfig, whether it is documented, and where from."""

    name: str
    data: DataConfig
    verified: bool
    sources: tuple[str, ...]
    note: str


def _caffe(
    mean: tuple[float, ...],
    std: tuple[float, ...] = (1.0, 1.0, 1.0),
    *,
    squash: bool,
    verified: bool = True,
) -> DataConfig:
    return DataConfig(
        input_size=(3, 224, 224),
        interpolation="bilinear",
        # "none": resize the whole image to 224x224 (no aspect ratio, no crop), as the GoogLeNet
        # README and Intel Neural Compressor's zoo examples do
        crop_mode="none" if squash else "center",
        crop_pct=1.0 if squash else 0.875,
        resize_size=None if squash else 256,
        mean=mean,
        std=std,
        color_order="BGR",
        value_range=(0.0, 255.0),
        verified=verified,
    )


_IMAGENET_256_224 = DataConfig(
    input_size=(3, 224, 224),
    interpolation="bilinear",
    resize_size=256,
    crop_pct=0.875,
    crop_mode="center",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "caffe_bgr_meansub",
            _caffe(_CAFFE_BGR_MEAN, squash=True),
            True,
            (
                "inception_and_googlenet/googlenet/README.md (Preprocessing)",
                "intel/neural-compressor examples/onnxrt/image_recognition/onnx_model_zoo/"
                "{alexnet,caffenet,googlenet,inception,zfnet,squeezenet}/.../main.py",
            ),
            "BVLC Caffe preprocessing: resize to 224x224, 0-255 BGR, subtract the BGR means "
            "(103.939, 116.779, 123.68), no scaling",
        ),
        Family(
            "caffe_bgr_meansub_unverified",
            _caffe(_CAFFE_BGR_MEAN, squash=True, verified=False),
            False,
            ("no README preprocessing and no third-party example (Inception-2, R-CNN ILSVRC13)",),
            "preprocessing NOT documented by the zoo; assumed to be the BVLC Caffe recipe "
            "(224x224, 0-255 BGR minus means) - check against the model's test_data_set",
        ),
        Family(
            "caffe2_densenet121",
            _caffe((103.94, 116.78, 123.68), (58.8235294,) * 3, squash=True, verified=False),
            False,
            (
                "openvinotoolkit/open_model_zoo models/public/densenet-121-caffe2/model.yml",
                "intel/neural-compressor .../densenet/quantization/ptq_static/main.py (disagrees:"
                " RGB, torchvision mean/std, 256->224 crop)",
            ),
            "preprocessing sources conflict (OpenVINO: BGR, mean (103.94,116.78,123.68), scale "
            "1/58.82; Intel NC: RGB torchvision mean/std); OpenVINO's is used - verify",
        ),
        Family(
            "caffe2_resnet50",
            _caffe(_CAFFE2_BGR_MEAN, _CAFFE2_BGR_STD, squash=False),
            True,
            ("openvinotoolkit/open_model_zoo models/public/resnet-50-caffe2/model.yml",),
            "OpenVINO spec for these Caffe2 weights: 0-255 BGR, mean (103.53,116.28,123.675), "
            "std (57.375,57.12,58.395); resize 256 + centre crop 224 assumed",
        ),
        Family(
            "caffe2_vgg19",
            _caffe(_CAFFE_BGR_MEAN, squash=False),
            True,
            ("openvinotoolkit/open_model_zoo models/public/vgg19-caffe2/model.yml",),
            "OpenVINO spec for these Caffe2 weights: 0-255 BGR minus (103.939,116.779,123.68), "
            "no scaling; resize 256 + centre crop 224 assumed",
        ),
        Family(
            "caffe2_shufflenet_v1",
            _caffe(_CAFFE2_BGR_MEAN, _CAFFE2_BGR_STD, squash=False, verified=False),
            False,
            ("shufflenet/README.md is silent; no OpenVINO/INC spec",),
            "preprocessing NOT documented; guessed from its Caffe2 origin (gpu_0/* blobs, like "
            "ResNet50-caffe2): 0-255 BGR, Caffe2 mean/std - verify",
        ),
        Family(
            "mxnet_gluon_imagenet",
            _IMAGENET_256_224,
            True,
            (
                "resnet/README.md, vgg/README.md, mobilenet/README.md, squeezenet/README.md "
                "(Preprocessing) and their imagenet_preprocess.py",
            ),
            "MXNet Gluon export: resize shorter side 256, centre crop 224, RGB /255, ImageNet "
            "mean/std; outputs logits (apply softmax yourself)",
        ),
        Family(
            "torchvision_imagenet",
            _IMAGENET_256_224,
            True,
            ("shufflenet/README.md (ShuffleNet-v2, a torchvision export)",),
            "torchvision export: Resize(256), CenterCrop(224), RGB /255, ImageNet mean/std",
        ),
        Family(
            "tf_efficientnet_lite",
            DataConfig(
                input_size=(3, 224, 224),
                interpolation="bilinear",
                resize_size=256,
                crop_pct=0.875,
                crop_mode="center",
                mean=(127.0, 127.0, 127.0),
                std=(128.0, 128.0, 128.0),
                value_range=(0.0, 255.0),
                layout="NHWC",
            ),
            True,
            ("efficientnet-lite4/README.md (Preprocessing, labels_map.txt: 1000 classes)",),
            "TF EfficientNet-Lite4 (tf2onnx): NHWC [1,224,224,3], (x - 127) / 128 on 0-255 RGB; "
            "softmax in the graph; 1000 classes, no background",
        ),
        Family(
            "unknown",
            DataConfig(verified=False),
            False,
            ("no rule in omnizoo for this zoo directory",),
            "preprocessing UNKNOWN: omnizoo has no documented recipe for this entry; the "
            "DataConfig is a placeholder (ImageNet defaults) - do not trust predictions",
        ),
    )
}


def family_of(model_path: str, model_name: str) -> str:
    """The preprocessing family of a classification entry (``"unknown"`` when no rule fits)."""
    rel = model_path
    for prefix in CLASSIFICATION_DIRS:
        if rel.startswith(prefix):
            rel = rel[len(prefix) :]
            break
    directory = rel.split("/", 1)[0]
    stem = rel.rsplit("/", 1)[-1].lower()
    name = model_name.lower()
    if directory in ("alexnet", "caffenet", "zfnet-512"):
        return "caffe_bgr_meansub"
    if directory == "inception_and_googlenet":
        sub = rel.split("/")[1] if "/" in rel else ""
        return (
            "caffe_bgr_meansub"
            if sub in ("googlenet", "inception_v1")
            else ("caffe_bgr_meansub_unverified")
        )
    if directory == "rcnn_ilsvrc13":
        return "caffe_bgr_meansub_unverified"
    if directory == "densenet-121":
        return "caffe2_densenet121"
    if directory == "efficientnet-lite4":
        return "tf_efficientnet_lite"
    if directory == "squeezenet":
        # SqueezeNet 1.0 is the Caffe2/BVLC conversion, 1.1 the MXNet export
        return (
            "caffe_bgr_meansub"
            if ("1.0" in name or "squeezenet1.0" in stem)
            else ("mxnet_gluon_imagenet")
        )
    if directory == "shufflenet":
        return "torchvision_imagenet" if ("v2" in name or "-v2" in stem) else "caffe2_shufflenet_v1"
    if directory == "resnet":
        return "caffe2_resnet50" if "caffe2" in stem else "mxnet_gluon_imagenet"
    if directory == "vgg":
        return "caffe2_vgg19" if "caffe2" in stem else "mxnet_gluon_imagenet"
    if directory == "mobilenet":
        return "mxnet_gluon_imagenet"
    return "unknown"


@dataclass(frozen=True)
class ZooEntry:
    """One manifest entry, classified."""

    arch: str
    stem: str
    model: str
    model_path: str
    opset: int
    family: str
    layout: str
    num_classes: int
    softmax_in_graph: bool
    input_name: str
    input_shape: tuple[Any, ...]
    output_name: str
    output_shape: tuple[Any, ...]
    io_inferred: bool
    loadable: bool
    precision: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def fixed_batch(self) -> bool:
        return bool(self.input_shape) and self.input_shape[0] == 1


def arch_name(stem: str) -> str:
    """The omnizoo arch for a zoo file stem: the stem as the zoo spells it (``squeezenet1.0-12``
    keeps its dot; the registry reads the longest known arch first, so ``.imagenet`` still
    parses as the tag)."""
    return stem


def _io(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    io = (entry.get("metadata") or {}).get("io_ports")
    return io if io and io.get("inputs") and io.get("outputs") else None


def exclusion_reason(entry: Mapping[str, Any]) -> str | None:
    """Why a manifest entry is not one of omnizoo's ImageNet classifiers (None: it is)."""
    path = str(entry.get("model_path", ""))
    if not path.startswith(CLASSIFICATION_DIRS):
        return "not under vision/classification"
    tags = {str(t).lower() for t in (entry.get("metadata") or {}).get("tags") or ()}
    if "/mnist/" in path or "mnist" in tags:
        return "MNIST digits (10 classes, 1x28x28 grayscale), not ImageNet"
    if "/preproc/" in path or "preprocessing" in tags:
        return "a preprocessing graph, not a classifier"
    return None


def _precision(stem: str) -> str:
    if stem.endswith("-int8"):
        return "int8 (QOperator)"
    if stem.endswith("-qdq"):
        return "int8 (QDQ)"
    return "fp32"


def _num_classes(shape: Sequence[Any]) -> int:
    n = 1
    for dim in list(shape)[1:]:
        if isinstance(dim, int) and dim > 0:
            n *= dim
    return n


_SOFTMAX_OUTPUT = re.compile(r"softmax|prob", re.IGNORECASE)


def classify_manifest(manifest: Sequence[Mapping[str, Any]]) -> list[ZooEntry]:
    """The ImageNet classifiers of a manifest, in manifest order, classified."""
    chosen = [e for e in manifest if exclusion_reason(e) is None]
    entries: list[ZooEntry] = []
    for entry in chosen:
        io = _io(entry)
        inferred = False
        if io is None:
            # 20 opset-3/6 entries have no io_ports; the same model at another opset has them
            siblings = sorted(
                (e for e in chosen if e.get("model") == entry.get("model") and _io(e)),
                key=lambda e: abs(int(e.get("opset_version", 0)) - int(entry["opset_version"])),
            )
            if siblings:
                io, inferred = _io(siblings[0]), True
        inp = (io or {}).get("inputs", [{}])[0]
        out = (io or {}).get("outputs", [{}])[0]
        in_shape = tuple(inp.get("shape") or (1, 3, 224, 224))
        out_shape = tuple(out.get("shape") or (1, 1000))
        layout = "NHWC" if len(in_shape) == 4 and in_shape[-1] == 3 and in_shape[1] != 3 else "NCHW"
        stem = str(entry["model_path"]).rsplit("/", 1)[-1]
        stem = stem[: -len(".onnx")] if stem.endswith(".onnx") else stem
        opset = int(entry["opset_version"])
        entries.append(
            ZooEntry(
                arch=arch_name(stem),
                stem=stem,
                model=str(entry["model"]),
                model_path=str(entry["model_path"]),
                opset=opset,
                family=family_of(str(entry["model_path"]), str(entry["model"])),
                layout=layout,
                num_classes=_num_classes(out_shape),
                softmax_in_graph=bool(_SOFTMAX_OUTPUT.search(str(out.get("name", "")))),
                input_name=str(inp.get("name", "")),
                input_shape=in_shape,
                output_name=str(out.get("name", "")),
                output_shape=out_shape,
                io_inferred=inferred,
                loadable=opset >= MIN_ORT_OPSET,
                precision=_precision(stem),
                raw=entry,
            )
        )
    return entries
