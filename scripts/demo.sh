#!/usr/bin/env bash
# `make demo`: the support recipe's small configuration end to end, then the final table.
#
#   scripts/demo.sh [OUT]        (default OUT: demo_out)
#
# 200 synthesised support calls are labeled by Whisper base (and tiny.en, for the agreement
# score), filtered and lexicon-corrected; a student is trained on the kept labels, exported
# and evaluated beside the teacher and off-the-shelf tiny.en on 50 other calls. On a fresh
# clone, 2 quiet CPU cores: 5 min 35 s, 7 min 18 s with creating .venv and installing.
# A rerun resumes: finished stages are skipped.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-demo_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export ASR_DISTILL="${ASR_DISTILL:-$REPO/.venv/bin/asr-distill}"
export PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
start=$(date +%s)
"$REPO/recipes/support/run.sh" --size small --out "$OUT"
elapsed=$(( $(date +%s) - start ))
"$PYTHON" - "$OUT" "$elapsed" <<'PY'
import json
import sys
from pathlib import Path

out, elapsed = Path(sys.argv[1]), int(sys.argv[2])
summary = json.loads((out / "eval" / "summary.json").read_text())
print(f"\nIn-domain test: {summary['manifest']} (normaliser {summary['normaliser']})\n")
print(f"{'model':10s} {'WER %':>7s} {'95% CI':>13s} {'RTFx':>6s} {'params':>8s}")
for m in summary["models"]:
    ci = f"{m['ci']['low']:.1f}-{m['ci']['high']:.1f}"
    print(f"{m['model']:10s} {m['wer']:7.2f} {ci:>13s} {m['rtfx']:6.1f} {m['params'] / 1e6:7.1f}M")
for c in summary["comparisons"]:
    verdict = f"{c['a']} better" if c["a_better"] else "no significant difference"
    if not c["a_better"] and c["delta"] > 0 and 1 - c["p_value"] < 0.05:
        verdict = f"{c['b']} better"
    print(f"  {c['a']} vs {c['b']}: {c['delta']:+.2f} points (paired bootstrap p={c['p_value']:.3f}): {verdict}")
print(f"\nreport: {out / 'report' / 'report.md'}")
print(f"demo wall time (this run): {elapsed // 60} min {elapsed % 60} s")
PY
