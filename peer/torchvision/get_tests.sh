#!/usr/bin/env bash
# Put torchvision's own test/test_models.py (and what it imports: test/common_utils.py,
# test/_utils_internal.py, test/conftest.py, plus test/expect/ and the one image asset it reads)
# for the INSTALLED torchvision version into $ROOT/tv-tests, and pytest-mock (the
# `mocker` fixture test_models.py uses) into $ROOT/pydeps. Nothing is installed into the venv.
#
# torchvision publishes no sdist on PyPI, so the tests come from its git repository, at the tag
# of the installed version (v$VER, e.g. v0.29.1), falling back to the commit the wheel was built
# from (torchvision.version.git_version). Three routes, first that applies wins:
#
#   VISION_GIT=/path/to/vision(.git)   a local clone or bare mirror of github.com/pytorch/vision:
#                                      `git archive <tag>` of the files above (no network).
#   TV_TESTS_SRC=/dir                  a folder that already holds test_models.py, common_utils.py,
#                                      _utils_internal.py, conftest.py (+ optional expect/, assets/,
#                                      PROVENANCE); copied as is. Use it where GitHub is unreachable.
#   (neither)                          a blobless, depth-1 clone of the tag from GitHub into
#                                      $ROOT/dl/vision.git, then the same `git archive`.
#
# Missing expect/*.pkl files are not an error: run.sh regenerates them from PLAIN torchvision
# (EXPECTTEST_ACCEPT=1) before the baseline/omnizoo runs. A missing
# assets/encode_jpeg/grace_hopper_517x606.jpg (the "real image" of 8 detection models) is replaced
# by a deterministic synthetic 517x606 JPEG, recorded in PROVENANCE; the expect files of those
# models are then regenerated from it too, so baseline and omnizoo still see the same input.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${TVPEER_ROOT:-${TMPDIR:-/tmp}/omnizoo-tv-peer}"
PY="${PY:-$PWD/.venv/bin/python}"   # run from the project root
DEST="$ROOT/tv-tests"
VER="$("$PY" -c 'import torchvision; print(torchvision.__version__.split("+")[0])')"
GITREV="$("$PY" -c 'import torchvision.version as v; print(getattr(v, "git_version", "") or "")')"
TAG="v$VER"
FILES=(test/test_models.py test/common_utils.py test/_utils_internal.py test/conftest.py)
ASSET=test/assets/encode_jpeg/grace_hopper_517x606.jpg
mkdir -p "$ROOT/dl"
STAGE="$(mktemp -d "$ROOT/dl/stage.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

from_git() {  # git dir
  local git="$1" rev=""
  for r in "$TAG" "$GITREV"; do
    if [ -n "$r" ] && git -C "$git" rev-parse -q --verify "$r^{commit}" >/dev/null; then rev="$r"; break; fi
  done
  if [ -z "$rev" ]; then echo "neither $TAG nor $GITREV is in $git" >&2; exit 2; fi
  git -C "$git" archive --format=tar "$rev" "${FILES[@]}" test/expect | tar xf - -C "$STAGE"
  git -C "$git" archive --format=tar "$rev" "$ASSET" 2>/dev/null | tar xf - -C "$STAGE" || true
  mv "$STAGE/test" "$STAGE/t"
  {
    echo "source: git $git"
    echo "revision: $rev = $(git -C "$git" rev-parse "$rev^{commit}")"
    echo "installed torchvision: $VER (wheel built from $GITREV)"
  } > "$STAGE/t/PROVENANCE"
}

if [ -n "${VISION_GIT:-}" ]; then
  from_git "$VISION_GIT"
elif [ -n "${TV_TESTS_SRC:-}" ]; then
  mkdir -p "$STAGE/t"
  cp -a "$TV_TESTS_SRC"/. "$STAGE/t/"
  for f in "${FILES[@]}"; do [ -f "$STAGE/t/$(basename "$f")" ] || { echo "TV_TESTS_SRC lacks $(basename "$f")" >&2; exit 2; }; done
  [ -f "$STAGE/t/PROVENANCE" ] || echo "source: TV_TESTS_SRC=$TV_TESTS_SRC (no PROVENANCE given)" > "$STAGE/t/PROVENANCE"
  echo "installed torchvision: $VER (wheel built from $GITREV)" >> "$STAGE/t/PROVENANCE"
else
  G="$ROOT/dl/vision.git"
  [ -d "$G" ] || git clone --bare --filter=blob:none --depth 1 --branch "$TAG" https://github.com/pytorch/vision "$G"
  from_git "$G"
fi

mkdir -p "$STAGE/t/expect" "$STAGE/t/assets/encode_jpeg"
if [ ! -f "$STAGE/t/assets/encode_jpeg/grace_hopper_517x606.jpg" ]; then
  "$PY" - "$STAGE/t/assets/encode_jpeg/grace_hopper_517x606.jpg" <<'EOF'
import sys
import numpy as np
from PIL import Image
# deterministic stand-in: smooth colour gradients plus seeded noise, 517 wide x 606 high
h, w = 606, 517
yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
rng = np.random.RandomState(0)
img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
img = np.clip(img * 0.7 + rng.uniform(0, 76, size=img.shape), 0, 255).astype(np.uint8)
Image.fromarray(img, "RGB").save(sys.argv[1], quality=90)
EOF
  echo "asset grace_hopper_517x606.jpg: SYNTHETIC STAND-IN made by get_tests.sh (the real one was not available)" >> "$STAGE/t/PROVENANCE"
  # expect files made from the real image would not match the stand-in: drop them (run.sh regenerates)
  rm -f "$STAGE/t/expect/"ModelTester.test_{retinanet_resnet50_fpn,retinanet_resnet50_fpn_v2,keypointrcnn_resnet50_fpn,fasterrcnn_resnet50_fpn,fasterrcnn_resnet50_fpn_v2,fcos_resnet50_fpn,maskrcnn_resnet50_fpn,maskrcnn_resnet50_fpn_v2}_expect.pkl
fi
echo "expect files from the source: $(ls "$STAGE/t/expect" | wc -l) (missing ones are regenerated by run.sh from plain torchvision)" >> "$STAGE/t/PROVENANCE"
rm -rf "$DEST" && mv "$STAGE/t" "$DEST"

# pytest-mock, for the `mocker` fixture (disable_weight_loading); into $ROOT/pydeps, not the venv
if ! PYTHONPATH="$ROOT/pydeps" "$PY" -c 'import pytest_mock' 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --target "$ROOT/pydeps" pytest-mock
fi
echo "torchvision $VER tests in $DEST:"
cat "$DEST/PROVENANCE"
