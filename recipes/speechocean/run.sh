#!/usr/bin/env bash
# speechocean762 recipe: real non-native read English (Mandarin L1), half of it children's speech.
#
#   SPEECHOCEAN_DIR=/path/to/speechocean762 recipes/speechocean/run.sh [--size smoke|small|full] [--stage N] [--stop-stage N] [--out DIR]
#
# SPEECHOCEAN_DIR holds pool.jsonl (the unlabeled pool: its transcripts only measure the labels)
# and test.jsonl (other speakers); default: ../shared/data/speechocean762 beside this repository.
# Stages (each skipped when its .done marker exists; rerun = resume):
#   0  copy the manifests into OUT/data with absolute paths (small: every 4th pool clip);
#      out-of-domain test sets: AN4 test and the support calls (Piper) in OUT/data/ood/
#   1  label the pool with base and tiny.en          4  export the student
#   2  filter + correct (loops trimmed or dropped)    5  evaluate teacher, tiny.en, student on the test set
#   3  train the student                             6  report + data card
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
HERE="$REPO/recipes/speechocean"
SPEECHOCEAN_DIR="${SPEECHOCEAN_DIR:-$REPO/../shared/data/speechocean762}"

case "$size" in
  smoke) subset=(--first 8); test_subset=(--first 4); config="$HERE/config_smoke.yaml" ;;
  small) subset=(--every 4); test_subset=(); config="$HERE/config_small.yaml" ;;
  full) subset=(); test_subset=(); config="$HERE/config.yaml" ;;
  *) echo "unknown --size $size (smoke, small, full)" >&2; exit 2 ;;
esac
out="${out:-$REPO/runs/recipes/speechocean-$size}"
mkdir -p "$out"

prepare_data SPEECHOCEAN_DIR pool test
synth_ood support
prepare_ood an4="$SHARED_DATA/an4/test.jsonl"
pipeline_stages "$config"
