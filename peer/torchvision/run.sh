#!/usr/bin/env bash
# Run torchvision's own test/test_models.py (for the installed torchvision, see get_tests.sh) twice:
# plain torchvision (baseline) and with torchvision's model builders routed through
# omnizoo.create_model("torchvision:"+name) (see tv_omnizoo_plugin.py); compare.py prints the table.
#
#   run.sh [all|sweep|other|full|coldwarm] [extra pytest args...]
#     all      (default) the hand-written tests + the per-model tests on the models in models.txt
#     sweep    the per-model tests (classification/segmentation/detection/video/quantized) on models.txt
#     other    the hand-written tests only (memory_efficient densenet, resnet dilation, norm_layer, ...)
#     full     every test on every registered model (long: see README)
#     coldwarm the `all` selection with the expect-checked tests first, omnizoo run twice: on an EMPTY
#              OMNIZOO_HOME (cold, in parallel with the baseline) and then again on that same, now
#              filled, home (warm); one comparison table each
#   MODELS=<file> replaces models.txt; LIMIT=<s> per pytest process (default 1500); SERIAL=1 runs
#   baseline and omnizoo one after the other instead of in parallel; KEEP_HOME=1 keeps the homes.
#
# Step 0 (plain torchvision, EXPECTTEST_ACCEPT=1): writes the expect/*.pkl files the selection needs
# and does not have yet (only those), so the expected outputs are torchvision's own on this machine.
# Every omnizoo run gets a fresh temporary OMNIZOO_HOME (empty: the first create_model builds the
# card index), OMNIZOO_OFFLINE=1, an empty TORCH_HOME, one torch thread, no CUDA (TV_CUDA=1 keeps it).
# Results: $OUT/{accept,baseline,omnizoo}-<mode>.{jsonl,log} and $OUT/compare-<mode>.txt.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${TVPEER_ROOT:-${TMPDIR:-/tmp}/omnizoo-tv-peer}"
PY="${PY:-$PWD/.venv/bin/python}"   # run from the project root
TESTS="${TV_TESTS:-$ROOT/tv-tests}"
OUT="${OUT:-$ROOT/results}"
MODE="${1:-all}"; shift || true
LIMIT="${LIMIT:-1500}"
MODELS="${MODELS:-$HERE/models.txt}"

if [ ! -f "$TESTS/test_models.py" ]; then
  echo "torchvision tests missing: run $HERE/get_tests.sh first" >&2; exit 2
fi
case "$MODE" in
  all)      SEL=(--oz-part all --oz-models "$MODELS") ;;
  sweep)    SEL=(--oz-part sweep --oz-models "$MODELS") ;;
  other)    SEL=(--oz-part other) ;;
  full)     SEL=(--oz-part all) ;;
  coldwarm) SEL=(--oz-part all --oz-models "$MODELS" --oz-expect-first) ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
export OMNIZOO_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$HERE:$ROOT/pydeps${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
[ "${TV_CUDA:-0}" = 1 ] || export CUDA_VISIBLE_DEVICES=""
TORCH_HOME="$(mktemp -d "$ROOT/torch-home.XXXXXX")"; export TORCH_HOME   # no cached torchvision weights
HOMES=("$TORCH_HOME")
cleanup() { [ "${KEEP_HOME:-0}" = 1 ] || rm -rf "${HOMES[@]}"; }
trap cleanup EXIT

pytest_run() {  # name home [plugin args...]
  local name="$1" home="$2"; shift 2
  rm -f "$OUT/$name.jsonl"
  {
    echo "# $name: OMNIZOO_HOME=$home ($(ls -A "$home" 2>/dev/null | wc -l) entries at start) PYTHONPATH=$PYTHONPATH"
    ( cd "$TESTS" && OMNIZOO_HOME="$home" timeout "$LIMIT" "$PY" -m pytest test_models.py -c "$HERE/pytest.ini" \
        --rootdir "$TESTS" -p no:cacheprovider -p tv_omnizoo_plugin "$@" -q -rfEs --tb=short -W ignore \
        --durations=15 --oz-log="$OUT/$name.jsonl" )
    echo "$name exit $?"
  } > "$OUT/$name.log" 2>&1
}
new_home() { NEWHOME="$(mktemp -d "$ROOT/home.XXXXXX")"; HOMES+=("$NEWHOME"); }  # sets NEWHOME

# Step 0: expect files from plain torchvision, only the missing ones
new_home
EXPECTTEST_ACCEPT=1 pytest_run "accept-$MODE" "$NEWHOME" "${SEL[@]}" --oz-accept-missing "$@"
tail -n 2 "$OUT/accept-$MODE.log"

run_pair() {  # baseline-name omnizoo-name omnizoo-home
  new_home
  local bhome="$NEWHOME"
  if [ "${SERIAL:-0}" = 1 ]; then
    pytest_run "$1" "$bhome" "${SEL[@]}" "${EXTRA[@]}"
    pytest_run "$2" "$3" "${SEL[@]}" --oz-patch "${EXTRA[@]}"
  else
    pytest_run "$1" "$bhome" "${SEL[@]}" "${EXTRA[@]}" &
    local p1=$!
    pytest_run "$2" "$3" "${SEL[@]}" --oz-patch "${EXTRA[@]}" &
    local p2=$!
    wait $p1 $p2
  fi
}
EXTRA=("$@")
new_home
OZHOME="$NEWHOME"
if [ "$MODE" = coldwarm ]; then
  run_pair baseline-coldwarm omnizoo-cold "$OZHOME"
  pytest_run omnizoo-warm "$OZHOME" "${SEL[@]}" --oz-patch "${EXTRA[@]}"
  tail -n 3 "$OUT/baseline-coldwarm.log" "$OUT/omnizoo-cold.log" "$OUT/omnizoo-warm.log"
  for t in cold warm; do
    "$PY" "$HERE/compare.py" "$OUT/baseline-coldwarm.jsonl" "$OUT/omnizoo-$t.jsonl" \
      "torchvision > omnizoo, $t home" | tee "$OUT/compare-coldwarm-$t.txt"
    echo
  done
else
  run_pair "baseline-$MODE" "omnizoo-$MODE" "$OZHOME"
  tail -n 3 "$OUT/baseline-$MODE.log" "$OUT/omnizoo-$MODE.log"
  "$PY" "$HERE/compare.py" "$OUT/baseline-$MODE.jsonl" "$OUT/omnizoo-$MODE.jsonl" | tee "$OUT/compare-$MODE.txt"
fi
