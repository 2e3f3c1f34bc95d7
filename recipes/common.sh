# Shared by every recipe's run.sh: option parsing and stage bookkeeping (icefall style).
#
#   --stage N / --stop-stage N   run stages N..M (default: all)
#   --size NAME                  which config (recipe-specific: smoke, small, full)
#   --out DIR                    output root (default: runs/recipes/<recipe>-<size> in the repo)
#   --dry-run                    recipe-specific (librispeech: write sbatch scripts, run locally)
#
# A stage is skipped when its .done marker exists; the pipeline stages keep theirs in
# OUT/<stage>/.done (written by `asr-distill run`), data preparation in OUT/data/.done.
# Set ASR_DISTILL to the command to call (default: asr-distill on PATH, else the repo's .venv).

stage=0
stop_stage=100
size=small
out=""
dry_run=false

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) sed -n '2,/^set -/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${ASR_DISTILL:-}" ]; then
  if [ -x "$REPO/.venv/bin/asr-distill" ]; then ASR_DISTILL="$REPO/.venv/bin/asr-distill"
  else ASR_DISTILL=asr-distill; fi
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi

SHARED_DATA="${SHARED_DATA:-$REPO/../shared/data}"  # AN4 and speechocean762 (out-of-domain test sets)

# prepare_ood NAME=SRC...: stage 0's out-of-domain test sets, each copied once with absolute
# paths to OUT/data/ood/NAME.jsonl (smoke: the first 3 lines; small: every 5th of a set over
# SMALL_WHOLE_MAX lines, a smaller one whole; full: all). An absent SRC is said, and the evaluate
# stage skips that set with the reason.
SMALL_WHOLE_MAX=200  # AN4 test (130) stays whole: every 5th left 81 words, one word 1.2 points of WER
prepare_ood() {
  local spec name src subset=()
  want 0 || return 0
  mkdir -p "$out/data/ood"
  for spec in "$@"; do
    name="${spec%%=*}" src="${spec#*=}"
    [ -f "$out/data/ood/$name.jsonl" ] && continue
    subset=()
    case "$size" in
      smoke) subset=(--first 3) ;;
      small) if [ -f "$src" ] && [ "$(grep -c . "$src")" -gt "$SMALL_WHOLE_MAX" ]; then subset=(--every 5); fi ;;
    esac
    if [ -f "$src" ]; then
      "$PYTHON" "$REPO/recipes/tools/manifest_subset.py" "$src" "$out/data/ood/$name.jsonl" ${subset[@]+"${subset[@]}"}
    else
      log "out-of-domain set $name: $src not found (set SHARED_DATA); evaluation will skip it"
    fi
  done
}

# synth_ood NAME: the support recipe's test calls (Piper, seed 2: the same sentences; smoke 3,
# small 50, full 300) as OUT/data/ood/NAME/manifest.jsonl; without Piper it is said, and skipped.
synth_ood() {
  local n=300
  want 0 || return 0
  [ -f "$out/data/ood/$1/manifest.jsonl" ] && return 0
  case "$size" in smoke) n=3 ;; small) n=50 ;; esac
  "$ASR_DISTILL" synth --n "$n" --seed 2 --out "$out/data/ood/$1" \
    || log "out-of-domain set $1: synthesis failed (is piper-tts installed?); evaluation will skip it"
}

# want N: true when stage N is inside --stage/--stop-stage
want() { [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; }

# log MESSAGE: a timestamped progress line on stderr
log() { echo "$(date -u +%H:%M:%S) [$(basename "$(dirname "$0")")] $*" >&2; }

# prepare_data VAR POOL TEST: stage 0, $VAR/POOL.jsonl -> OUT/data/train.jsonl and $VAR/TEST.jsonl
# -> OUT/data/test.jsonl with absolute audio paths (VAR names the variable holding the corpus
# folder, so an error can say what to set); the subset options come from the arrays `subset` and
# `test_subset` (manifest_subset.py's --first N / --every K).
prepare_data() {
  local var="$1" pool="$2" test="$3" dir="${!1}" f
  want 0 || return 0
  [ -f "$out/data/.done" ] && return 0
  log "stage 0: manifests from $dir"
  for f in "$pool" "$test"; do
    if [ ! -f "$dir/$f.jsonl" ]; then
      echo "error: $dir/$f.jsonl not found; set $var to a folder with $pool.jsonl and $test.jsonl" >&2
      exit 1
    fi
  done
  "$PYTHON" "$REPO/recipes/tools/manifest_subset.py" "$dir/$pool.jsonl" "$out/data/train.jsonl" ${subset[@]+"${subset[@]}"}
  "$PYTHON" "$REPO/recipes/tools/manifest_subset.py" "$dir/$test.jsonl" "$out/data/test.jsonl" ${test_subset[@]+"${test_subset[@]}"}
  touch "$out/data/.done"
}

# pipeline_stage N NAME[:LAST] CONFIG: stage N runs the pipeline's stages NAME..LAST (skipped when done)
pipeline_stage() {
  local n="$1" name="$2" config="$3"
  want "$n" || return 0
  log "stage $n: $name"
  "$ASR_DISTILL" run "$config" --out "$out" --from "${name%%:*}" --to "${name##*:}"
}

# pipeline_stages CONFIG: stages 1-6 (label .. report; stage 5 also runs the rounds of a config with
# rounds > 1), then the final table and report path
pipeline_stages() {
  local config="$1" n=1 name
  for name in label filter train export evaluate:rounds report; do
    pipeline_stage "$n" "$name" "$config"
    n=$((n + 1))
  done
  if want 6 && [ -f "$out/eval/table.md" ]; then
    echo; cat "$out/eval/table.md"; echo; echo "report: $out/report/report.md"
  fi
}
