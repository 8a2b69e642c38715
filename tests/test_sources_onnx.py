"""The ONNX zoo source: the real manifest (from ../shared/reference, served on loopback), the
classification/family rules against the reference table, and OnnxModel on graphs the tests
export themselves (downloaded through the verified cache from a loopback server)."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from omnizoo import settings
from omnizoo.errors import BackendError, HashMismatchError, UnsupportedError
from omnizoo.loading.request import CreateRequest
from omnizoo.sources.onnx import manifest as onnx_source
from omnizoo.sources.onnx import testdata as onnx_testdata
from omnizoo.sources.onnx.adapter import OnnxZooSource
from omnizoo.sources.onnx.families import FAMILIES, classify_manifest, exclusion_reason
from omnizoo.sources.onnx.manifest import MANIFEST_SHA256, manifest_problem
from sources_helpers import check_card

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
MANIFEST = REFERENCE / "onnx_hub_manifest.json"
TABLE = REFERENCE / "onnx_zoo_classification.json"
HF = "https://huggingface.co/onnxmodelzoo/legacy_models/resolve/main/"

needs_reference = pytest.mark.skipif(not MANIFEST.is_file(), reason="no ../shared/reference")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def _reset() -> None:
    from omnizoo.registry.index import reset_indexes

    settings.reset()
    reset_indexes()
    onnx_source._tried.clear()
    onnx_source._problem = None


@pytest.fixture
def no_shipped_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An install without the manifest the package ships (a trimmed install): the manifest
    must come from the cache, a local copy or the network."""
    monkeypatch.setattr(onnx_source, "SHIPPED", tmp_path / "no-shipped-manifest.json.gz")


@pytest.fixture
def zoo_home(
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    weight_server: Any,
    no_shipped_manifest: None,
) -> Any:
    """An empty home whose manifest URL is the real manifest served on loopback."""
    url = weight_server.add("/raw/ONNX_HUB_MANIFEST.json", MANIFEST.read_bytes())
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", url)
    _reset()
    yield weight_server
    _reset()


# ----------------------------------------------------------------------------- the rules
@needs_reference
def test_manifest_sha256_is_pinned() -> None:
    assert hashlib.sha256(MANIFEST.read_bytes()).hexdigest() == MANIFEST_SHA256


@needs_reference
def test_classification_agrees_with_reference_table() -> None:
    manifest = json.loads(MANIFEST.read_bytes())
    table = json.loads(TABLE.read_bytes())
    entries = {e.model_path: e for e in classify_manifest(manifest)}
    assert len(entries) == table["summary"]["n_models"] == 113
    excluded = [
        e
        for e in manifest
        if "classification/" in e["model_path"] and exclusion_reason(e) is not None
    ]
    assert sorted(e["model_path"] for e in excluded) == sorted(
        e["model_path"] for e in table["excluded_classification_entries"]
    )
    for ref in table["models"]:
        e = entries[ref["model_path"]]
        assert e.model == ref["model"] and e.opset == ref["opset"]
        assert e.family == ref["family"], e.model_path
        assert e.layout == ref["layout"]
        assert e.softmax_in_graph == ref["softmax_in_graph"], e.model_path
        assert e.num_classes == ref["num_classes"]
        assert e.loadable == ref["onnxruntime_loadable"]
        assert e.io_inferred == ref["io_ports_inferred_from_sibling_opset"]
        assert list(e.output_shape) == ref["output_shape"]
        assert list(e.input_shape) == ref["io_ports"]["inputs"][0]["shape"]
    for name, fam in table["families"].items():
        confidence = str(fam.get("confidence", "")).lower()
        unverified = any(w in confidence for w in ("unverified", "conflicting", "guess"))
        assert FAMILIES[name].verified is not unverified, name
        assert FAMILIES[name].data.verified is not unverified, name


@needs_reference
def test_family_data_configs_follow_the_documented_recipes() -> None:
    fams = json.loads(TABLE.read_bytes())["families"]
    caffe = FAMILIES["caffe_bgr_meansub"].data
    assert caffe.mean == pytest.approx(tuple(reversed(fams["caffe_bgr_meansub"]["mean_rgb_order"])))
    assert caffe.color_order == "BGR" and caffe.value_range == (0, 255) and caffe.std == (1, 1, 1)
    assert caffe.crop_mode == "none"  # whole image resized to 224x224
    for name in ("caffe2_resnet50", "caffe2_vgg19", "caffe2_densenet121"):
        d = FAMILIES[name].data
        assert d.mean == pytest.approx(tuple(fams[name]["mean_bgr_order"]))
        assert d.color_order == "BGR" and d.value_range == (0, 255)
    assert FAMILIES["caffe2_resnet50"].data.std == pytest.approx(
        tuple(fams["caffe2_resnet50"]["std_bgr_order"])
    )
    assert FAMILIES["caffe2_densenet121"].data.std[0] == pytest.approx(
        fams["caffe2_densenet121"]["std"]
    )
    for name in ("mxnet_gluon_imagenet", "torchvision_imagenet"):
        d = FAMILIES[name].data
        assert d.mean == tuple(fams[name]["mean"]) and d.std == tuple(fams[name]["std"])
        assert d.scale_size == 256 and d.crop_size == (224, 224) and d.value_range == (0, 1)
    lite = FAMILIES["tf_efficientnet_lite"].data
    assert lite.layout == "NHWC" and lite.mean == (127,) * 3 and lite.std == (128,) * 3
    assert lite.value_range == (0, 255) and lite.scale_size == 256


# ----------------------------------------------------------------------------- the manifest
@needs_reference
def test_cards_from_manifest_on_loopback(zoo_home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnizoo.registry.registry import get_card, list_models

    names = list_models(source="onnx", pretrained=True)
    assert len(names) == 113
    assert "onnx:resnet50-v1-7.imagenet" in names
    assert "onnx:squeezenet1.0-12.imagenet" in names
    for name in names:
        check_card(get_card(name))
    card = get_card("onnx:resnet50-v1-7")
    [raw] = [
        e
        for e in json.loads(MANIFEST.read_bytes())
        if e["model_path"].endswith("/resnet50-v1-7.onnx")
    ]
    assert card.weights.format == "onnx"
    assert card.weights.size == raw["metadata"]["model_bytes"]
    assert card.weights.sha256 == raw["metadata"]["model_sha"]
    assert card.weights.urls == (
        HF + card.extra["model_path"],
        "https://media.githubusercontent.com/media/onnx/models/main/" + card.extra["model_path"],
    )
    assert len(card.weights.sha256) == 64 and card.output == "logits"
    assert get_card("onnx:squeezenet1.0-12").arch == "squeezenet1.0-12"
    lite = get_card("onnx:efficientnet-lite4-11")
    assert lite.data.layout == "NHWC" and lite.output == "probabilities"
    rcnn = get_card("onnx:rcnn-ilsvrc13-9")
    assert rcnn.num_classes == 200 and rcnn.tag == "ilsvrc13_det" and rcnn.label_set is None
    unverified = get_card("onnx:inception-v2-9")
    assert not unverified.data.verified and any("unverified" in n for n in unverified.notes)
    old = get_card("onnx:bvlcalexnet-3")
    assert old.extra["onnxruntime_loadable"] is False
    assert any("opset 3 < 7" in n for n in old.notes)
    assert zoo_home.route("/raw/ONNX_HUB_MANIFEST.json").bodies == 1
    # offline afterwards: the verified manifest comes from the cache, cards are rebuilt from it
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    monkeypatch.setenv("OMNIZOO_CARD_CACHE", "0")
    _reset()
    assert len(list_models(source="onnx", pretrained=True)) == 113
    assert manifest_problem() is None
    assert zoo_home.route("/raw/ONNX_HUB_MANIFEST.json").requests == 1


@pytest.mark.timeout(60)  # bounds a hang only; the promise is checked by counting attempts
def test_no_manifest_lists_nothing_and_says_how(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, no_shipped_manifest: None
) -> None:
    from omnizoo.registry.registry import list_models
    from omnizoo.weights import download

    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    _reset()
    assert list_models(source="onnx") == []
    problem = manifest_problem()
    assert problem is not None and "omnizoo download" in problem
    assert "OMNIZOO_ONNX_MANIFEST_URL" in problem
    # unreachable (not offline): one quick attempt (no retry, short waits), then nothing
    monkeypatch.delenv("OMNIZOO_OFFLINE")
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", "http://127.0.0.1:9/ONNX_HUB_MANIFEST.json")
    monkeypatch.setenv("OMNIZOO_CARD_CACHE", "0")
    monkeypatch.setenv("OMNIZOO_RETRIES", "5")
    monkeypatch.setenv("OMNIZOO_CONNECT_TIMEOUT", "60")
    _reset()
    attempts: list[tuple[int, float]] = []
    real_fetch = download.fetch_verified

    def counted(*args: Any, **kwargs: Any) -> Any:  # the real fetch, its settings recorded
        s = settings.get_settings()
        attempts.append((s.retries, s.connect_timeout))
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(download, "fetch_verified", counted)
    assert OnnxZooSource().build_cards() == []
    assert OnnxZooSource().build_cards() == []  # tried once per process, not per listing
    assert attempts == [(1, 5.0)]
    assert "127.0.0.1:9" in (manifest_problem() or "")
    _reset()


@needs_reference
def test_local_manifest_copy_is_verified(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_shipped_manifest: None
) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(MANIFEST.read_bytes())
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", str(good))
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    _reset()
    assert len(OnnxZooSource().build_cards()) == 113
    bad = tmp_path / "bad.json"
    bad.write_bytes(MANIFEST.read_bytes().replace(b"ResNet50", b"ResNet51", 1))
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", "file://" + str(bad))
    _reset()
    assert OnnxZooSource().build_cards() == []
    assert "sha256" in (manifest_problem() or "")
    with pytest.raises(HashMismatchError):
        onnx_source.load_manifest(fetch=False)
    _reset()


# ----------------------------------------------------------------------------- graphs
def _export(
    module: Any,
    shape: tuple[int, ...],
    *,
    dynamic: bool,
    input_name: str = "data",
    output_name: str = "output",
    opset: int = 17,
) -> bytes:
    buf = io.BytesIO()
    axes = {input_name: {0: "N"}, output_name: {0: "N"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.randn(*shape),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes=axes,
        )
    return buf.getvalue()


def _entry(
    name: str,
    path: str,
    data: bytes,
    in_shape: list[Any],
    out_name: str,
    out_shape: list[Any],
    *,
    opset: int = 17,
    tar: bytes | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "model_sha": hashlib.sha256(data).hexdigest(),
        "model_bytes": len(data),
        "tags": ["vision", "classification"],
        "io_ports": {
            "inputs": [{"name": "x", "shape": in_shape, "type": "tensor(float)"}],
            "outputs": [{"name": out_name, "shape": out_shape, "type": "tensor(float)"}],
        },
    }
    if tar is not None:
        meta.update(
            model_with_data_path=path.replace(".onnx", ".tar.gz"),
            model_with_data_sha=hashlib.sha256(tar).hexdigest(),
            model_with_data_bytes=len(tar),
        )
    return {
        "model": name,
        "model_path": path,
        "onnx_version": "1.15",
        "opset_version": opset,
        "metadata": meta,
    }


class _Nhwc(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.fc = torch.nn.Linear(8, 1000)

    def forward(self, x: Any) -> Any:
        x = self.conv(x.permute(0, 3, 1, 2)).mean((2, 3))
        return torch.softmax(self.fc(x), dim=1)


class _Conv4d(torch.nn.Module):
    """A Caffe2-DenseNet-like head: [N, 1000, 1, 1] output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1000, 7, stride=7)

    def forward(self, x: Any) -> Any:
        return torch.nn.functional.adaptive_avg_pool2d(self.conv(x), 1)


def test_onnx_model_layout_output_and_batch_quirks(tmp_path: Path) -> None:
    from omnizoo.sources.onnx.cards import card_for as _card
    from omnizoo.sources.onnx.model import OnnxModel

    nhwc = _Nhwc()
    lite_bytes = _export(
        nhwc, (1, 64, 64, 3), dynamic=False, input_name="images:0", output_name="Softmax:0"
    )
    dense = _Conv4d()
    dense_bytes = _export(dense, (1, 3, 64, 64), dynamic=True, output_name="fc6_1")
    base = "validated/vision/classification/"
    manifest = [
        _entry(
            "Lite-test",
            base + "efficientnet-lite4/model/lite-test-17.onnx",
            lite_bytes,
            [1, 64, 64, 3],
            "Softmax:0",
            [1, 1000],
        ),
        _entry(
            "Dense-test",
            base + "densenet-121/model/dense-test-17.onnx",
            dense_bytes,
            ["N", 3, 64, 64],
            "fc6_1",
            ["N", 1000, 1, 1],
        ),
    ]
    (lite, dense_entry) = classify_manifest(manifest)
    lite_card, dense_card = _card(lite), _card(dense_entry)
    assert lite_card.output == "probabilities" and lite_card.data.layout == "NHWC"
    assert dense_card.output == "logits" and dense_card.num_classes == 1000
    (tmp_path / "lite.onnx").write_bytes(lite_bytes)
    (tmp_path / "dense.onnx").write_bytes(dense_bytes)

    model = OnnxModel(tmp_path / "lite.onnx", card=lite_card)
    assert model.fixed_batch and model.layout == "NHWC"
    x = torch.rand(3, 3, 64, 64)  # NCHW, batch 3, for a fixed-batch-1 NHWC graph
    out = model(x)
    with torch.no_grad():
        ref = nhwc(x.permute(0, 2, 3, 1))
    assert out.shape == (3, 1000)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.sum(1), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(model(x.permute(0, 2, 3, 1)), out)  # NHWC input passes as is

    dmodel = OnnxModel(tmp_path / "dense.onnx", card=dense_card)
    assert not dmodel.fixed_batch
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dmodel(x), dense(x).flatten(1), atol=1e-5, rtol=1e-4)

    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not really a model")
    with pytest.raises(BackendError, match="onnxruntime cannot load"):
        OnnxModel(tmp_path / "junk.onnx", card=dense_card)
    with pytest.raises(BackendError, match="failed to run"):
        dmodel(torch.rand(1, 3, 64, 65)[:, :, :, :0])


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, bytes, bytes]:
    """A torchvision resnet18 (random init) exported here, and a test-data tarball for it."""
    import tarfile

    import torchvision
    from onnx import numpy_helper

    net = torchvision.models.resnet18(num_classes=1000).eval()
    data = _export(net, (1, 3, 64, 64), dynamic=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = net(x)
    tar_path = tmp_path_factory.mktemp("tiny") / "t.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, payload in (
            ("tiny/model.onnx", data),
            (
                "tiny/test_data_set_0/input_0.pb",
                numpy_helper.from_array(x.numpy()).SerializeToString(),
            ),
            (
                "tiny/test_data_set_0/output_0.pb",
                numpy_helper.from_array(y.numpy()).SerializeToString(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return net, data, tar_path.read_bytes()


@pytest.fixture
def tiny_zoo(
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    weight_server: Any,
    tiny_resnet: tuple[Any, bytes, bytes],
) -> Any:
    """A crafted manifest (its sha256 pinned for the test) listing the tiny resnet, served on
    loopback; the Hugging Face prefix is mirrored to the server."""
    net, data, tar = tiny_resnet
    path = "validated/vision/classification/resnet/model/tiny-resnet18-17.onnx"
    entries = [
        _entry("Tiny", path, data, ["N", 3, 64, 64], "output", ["N", 1000], tar=tar),
        _entry(
            "Tiny", path.replace("-17", "-3"), b"old", [1, 3, 64, 64], "output", [1, 1000], opset=3
        ),
    ]
    manifest = json.dumps(entries).encode()
    monkeypatch.setattr(onnx_source, "MANIFEST_SHA256", hashlib.sha256(manifest).hexdigest())
    monkeypatch.setenv(
        "OMNIZOO_ONNX_MANIFEST_URL", weight_server.add("/raw/manifest.json", manifest)
    )
    weight_server.add("/hf/" + path, data)
    weight_server.add("/hf/" + path.replace(".onnx", ".tar.gz"), tar)
    monkeypatch.setenv("OMNIZOO_MIRRORS", json.dumps({HF: weight_server.url("/hf/")}))
    _reset()
    yield net, weight_server, path
    _reset()


def test_create_model_downloads_verifies_and_matches_torch(tiny_zoo: Any) -> None:
    from omnizoo.registry.factory import create_model
    from omnizoo.registry.registry import get_card
    from omnizoo.sources.onnx.model import OnnxModel

    net, server, path = tiny_zoo
    model = create_model("onnx:tiny-resnet18-17", pretrained=True)
    assert isinstance(model, OnnxModel) and model.providers == ["CPUExecutionProvider"]
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=1e-4, rtol=1e-4)
    assert server.route("/hf/" + path).bodies == 1
    card = get_card("onnx:tiny-resnet18-17")
    for kwargs in ({"num_classes": 10}, {"in_chans": 1}, {"features_only": True}):
        with pytest.raises(UnsupportedError):
            create_model(card.name, pretrained=True, **kwargs)
    with pytest.raises(BackendError, match=r"opset >= 7.*onnx:tiny-resnet18-17"):
        OnnxZooSource().create(get_card("onnx:tiny-resnet18-3"), CreateRequest())
    # the test-data archive: verified download, safe extraction, and the outputs agree
    folder = onnx_testdata.download_test_data(card)
    [(inputs, outputs)] = onnx_testdata.load_test_data(folder)
    torch.testing.assert_close(
        model(torch.from_numpy(inputs[0])), torch.from_numpy(outputs[0]), atol=1e-4, rtol=1e-4
    )


def test_wrong_bytes_never_load(tiny_zoo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnizoo.registry.factory import create_model

    _, server, path = tiny_zoo
    server.route("/hf/" + path).wrong_bytes = True
    monkeypatch.setenv("OMNIZOO_RETRIES", "1")
    monkeypatch.setenv("OMNIZOO_CONNECT_TIMEOUT", "2")
    settings.reset()
    # the LFS host is unreachable from tests; the mirror's bytes fail the manifest's sha256
    with pytest.raises((HashMismatchError, OSError)):
        create_model("onnx:tiny-resnet18-17", pretrained=True)
