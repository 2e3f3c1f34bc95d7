#!/usr/bin/env bash
# AN4 recipe: real speech. AN4 train is the unlabeled pool, AN4 test measures WER.
#
#   AN4_DIR=/path/to/an4 recipes/an4/run.sh [--size smoke|small|full] [--stage N] [--stop-stage N] [--out DIR]
#
# AN4_DIR holds train.jsonl and test.jsonl (NeMo manifests, audio paths relative to them);
# default: ../shared/data/an4 beside this repository.
# Stages (each skipped when its .done marker exists; rerun = resume):
#   0  copy the manifests into OUT/data with absolute paths (small: every 4th train clip);
#      out-of-domain test sets: support calls (Piper) and speechocean762 test in OUT/data/ood/
#   1  label AN4 train with base and tiny.en        4  export the student
#   2  filter + correct (spoken form, as AN4 writes) 5  evaluate teacher, tiny.en, student on AN4 test
#   3  train the student                             6  report + data card
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
HERE="$REPO/recipes/an4"
AN4_DIR="${AN4_DIR:-$REPO/../shared/data/an4}"

case "$size" in
  smoke) subset=(--first 6); test_subset=(--first 3); config="$HERE/config_smoke.yaml" ;;
  small) subset=(--every 4); test_subset=(); config="$HERE/config_small.yaml" ;;
  full) subset=(); test_subset=(); config="$HERE/config.yaml" ;;
  *) echo "unknown --size $size (smoke, small, full)" >&2; exit 2 ;;
esac
out="${out:-$REPO/runs/recipes/an4-$size}"
mkdir -p "$out"

prepare_data AN4_DIR train test
synth_ood support
prepare_ood speechocean762="$SHARED_DATA/speechocean762/test.jsonl"
pipeline_stages "$config"
