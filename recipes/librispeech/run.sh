#!/usr/bin/env bash
# LibriSpeech recipe: pseudo-labeling at cluster scale (SLURM array, merge, DDP training).
#
#   LIBRISPEECH_DIR=/data/LibriSpeech recipes/librispeech/run.sh [--stage N] [--stop-stage N] [--out DIR]
#   recipes/librispeech/run.sh --dry-run [--stop-stage 2]     # on this machine, no SLURM, no LibriSpeech
#
# Stages (each skipped when its .done marker exists; rerun = resume):
#   0  manifests: LIBRISPEECH_DIR/train-clean-100 -> OUT/data/train.jsonl, test-clean -> test.jsonl
#   1  write OUT/slurm/{label,pipeline}.sbatch; submit the labeling array (one shard per task)
#      for the teacher and for tiny.en (the agreement score)
#   2  merge the shards (refuses while a shard is missing) and mark the label stage done
#   3  submit pipeline.sbatch: filter -> train (srun, DDP on 8 GPUs, bf16) -> export -> evaluate -> report
# Settings (environment): SHARDS (64), MAX_PARALLEL (16), PARTITION, ACCOUNT, TEACHER (large-v3).
# --dry-run: a miniature LibriSpeech tree from the AN4 fixture, SHARDS=2, tiny.en, and every
# sbatch script run locally with bash (SLURM_ARRAY_TASK_ID set by hand) instead of submitted.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
HERE="$REPO/recipes/librispeech"

if $dry_run; then
  SHARDS=2; TEACHER=tiny.en; config="$HERE/config_dry.yaml"
  out="${out:-$REPO/runs/recipes/librispeech-dry}"
  LIBRISPEECH_DIR="$out/mini/LibriSpeech"
else
  SHARDS="${SHARDS:-64}"; TEACHER="${TEACHER:-large-v3}"; config="$HERE/config.yaml"
  out="${out:-$REPO/runs/recipes/librispeech}"
  LIBRISPEECH_DIR="${LIBRISPEECH_DIR:-$REPO/../data/LibriSpeech}"
fi
MAX_PARALLEL="${MAX_PARALLEL:-16}"
mkdir -p "$out/slurm/logs" "$out/label"

if want 0 && [ ! -f "$out/data/.done" ]; then
  if $dry_run; then
    log "stage 0 (dry run): miniature LibriSpeech tree from the AN4 fixture"
    fixture="$REPO/tests/fixtures/an4/manifest.jsonl"
    "$PYTHON" "$HERE/local/prepare_librispeech.py" mini "$fixture" "$LIBRISPEECH_DIR/train-clean-100"
    "$PYTHON" "$HERE/local/prepare_librispeech.py" mini "$fixture" "$LIBRISPEECH_DIR/test-clean" --speakers 1
  fi
  log "stage 0: manifests from $LIBRISPEECH_DIR"
  "$PYTHON" "$HERE/local/prepare_librispeech.py" manifest "$LIBRISPEECH_DIR/train-clean-100" "$out/data/train.jsonl"
  "$PYTHON" "$HERE/local/prepare_librispeech.py" manifest "$LIBRISPEECH_DIR/test-clean" "$out/data/test.jsonl"
  touch "$out/data/.done"
fi
$dry_run || prepare_ood an4="$SHARED_DATA/an4/test.jsonl" speechocean762="$SHARED_DATA/speechocean762/test.jsonl"

sbatch_header() {  # name, then extra #SBATCH lines
  echo "#!/usr/bin/env bash"
  echo "#SBATCH --job-name=asrd-$1"
  echo "#SBATCH --output=$out/slurm/logs/$1-%A_%a.log"
  echo "#SBATCH --open-mode=append"
  [ -n "${PARTITION:-}" ] && echo "#SBATCH --partition=$PARTITION"
  [ -n "${ACCOUNT:-}" ] && echo "#SBATCH --account=$ACCOUNT"
  shift
  for line in "$@"; do echo "#SBATCH $line"; done
  echo "set -euo pipefail"
}

if want 1 && [ ! -f "$out/slurm/.done" ]; then
  log "stage 1: sbatch scripts in $out/slurm ($SHARDS shards)"
  {
    sbatch_header label "--array=0-$((SHARDS - 1))%$MAX_PARALLEL" "--gres=gpu:1" "--cpus-per-task=8" \
      "--time=04:00:00" "--requeue"
    echo "# One shard per array task: lines with index % $SHARDS == task id. Resumable, so requeue is safe."
    echo "MODEL=\"\${MODEL:-$TEACHER}\""
    echo "OUT_FILE=\"\${OUT_FILE:-$out/label/labels.jsonl}\""
    echo "\"$ASR_DISTILL\" label \"$out/data/train.jsonl\" --out \"\$OUT_FILE\" --model \"\$MODEL\" \\"
    echo "  --batch-size 16 --shard \"\${SLURM_ARRAY_TASK_ID}/$SHARDS\" --no-progress"
  } > "$out/slurm/label.sbatch"
  {
    sbatch_header pipeline "--nodes=1" "--ntasks-per-node=8" "--gres=gpu:8" "--cpus-per-task=8" \
      "--time=24:00:00"
    echo "# filter -> train (srun: one task per GPU, DDP, bf16) -> export -> evaluate -> report."
    echo "# Resubmit after a timeout: finished stages are skipped, training resumes from last.ckpt."
    echo "\"$ASR_DISTILL\" run \"$config\" --out \"$out\" --from filter"
  } > "$out/slurm/pipeline.sbatch"
  if $dry_run; then
    for ((i = 0; i < SHARDS; i++)); do
      log "stage 1 (dry run): label shard $i of $SHARDS locally"
      SLURM_ARRAY_TASK_ID=$i bash "$out/slurm/label.sbatch"
    done
  else
    jid=$(sbatch --parsable "$out/slurm/label.sbatch")
    jid2=$(sbatch --parsable --export="ALL,MODEL=tiny.en,OUT_FILE=$out/label/second.jsonl" "$out/slurm/label.sbatch")
    log "submitted labeling arrays $jid (teacher) and $jid2 (tiny.en); run stage 2 when they finish"
  fi
  touch "$out/slurm/.done"
fi

if want 2 && [ ! -f "$out/label/.done" ]; then
  log "stage 2: merge the shards"
  "$ASR_DISTILL" merge "$out/label/labels.jsonl"
  if ! $dry_run; then "$ASR_DISTILL" merge "$out/label/second.jsonl"; fi
  "$ASR_DISTILL" run "$config" --out "$out" --from label --to label
fi

if want 3; then
  if $dry_run; then
    log "stage 3 (dry run): pipeline.sbatch locally"
    bash "$out/slurm/pipeline.sbatch"
  else
    log "stage 3: submitting $out/slurm/pipeline.sbatch"
    sbatch "$out/slurm/pipeline.sbatch"
  fi
fi
