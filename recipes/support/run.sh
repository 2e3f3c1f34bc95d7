#!/usr/bin/env bash
# Support recipe: specialise a Whisper student to a customer-support domain it never heard.
#
#   recipes/support/run.sh [--size smoke|small|full] [--stage N] [--stop-stage N] [--out DIR]
#
# Stages (each skipped when its .done marker exists; rerun = resume):
#   0  synthesise train and test calls with Piper TTS (asr-distill synth)   -> OUT/data/.done
#      and copy the out-of-domain test sets (AN4 test, speechocean762 test) -> OUT/data/ood/
#   1  label the train calls with the teacher (base) and tiny.en            -> OUT/label/.done
#   2  filter + correct the labels (agreement score, product lexicon)       -> OUT/filter/.done
#   3  train the student on the kept labels (Lightning, CPU fp32)           -> OUT/train/.done
#   4  export the student as an openai-whisper .pt                          -> OUT/export/.done
#   5  evaluate teacher, tiny.en and student on the test calls, AN4 test and
#      speechocean762 test (absent ones skipped); flag student regressions  -> OUT/evaluate/.done
#   6  write the report (OUT/report/report.md) and the data card            -> OUT/report/.done
# Sizes: smoke (6+3 calls, tiny.en teacher: checks an install), small (200+50: `make demo`),
# full (2000+300). Stages 1-6 are `asr-distill run config_<size>.yaml --from X --to X`.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
HERE="$REPO/recipes/support"

case "$size" in
  smoke) n_train=6; n_test=3; config="$HERE/config_smoke.yaml" ;;
  small) n_train=200; n_test=50; config="$HERE/config_small.yaml" ;;
  full) n_train=2000; n_test=300; config="$HERE/config.yaml" ;;
  *) echo "unknown --size $size (smoke, small, full)" >&2; exit 2 ;;
esac
out="${out:-$REPO/runs/recipes/support-$size}"
mkdir -p "$out"

if want 0 && [ ! -f "$out/data/.done" ]; then
  log "stage 0: synthesise $n_train train and $n_test test calls"
  # Different seeds: the test calls are other sentences from the same templates.
  "$ASR_DISTILL" synth --n "$n_train" --seed 1 --out "$out/data/train"
  "$ASR_DISTILL" synth --n "$n_test" --seed 2 --out "$out/data/test"
  touch "$out/data/.done"
fi
prepare_ood an4="$SHARED_DATA/an4/test.jsonl" speechocean762="$SHARED_DATA/speechocean762/test.jsonl"

pipeline_stages "$config"
