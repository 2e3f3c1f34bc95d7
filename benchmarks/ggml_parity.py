"""A model exported to whisper.cpp's GGML format against the same model in PyTorch: WER and speed.

Exports the model (default tiny.en) with ``student.ggml.export_ggml``, decodes the manifest
with ``transcribe_ggml`` (pywhispercpp, every core) and with ``evaluate.decoding.transcribe``
(openai-whisper), and scores both under one normaliser. The GGML side must stay within
0.3 WER points of PyTorch. Load averages are recorded beside the speeds: on a shared machine
whisper.cpp's spinning threads slow down far more than PyTorch's.

    python benchmarks/ggml_parity.py --manifest ../shared/data/an4/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from asr_distill.evaluate.decoding import measure, transcribe
from asr_distill.jsonl import atomic_write_text
from asr_distill.metrics import DEFAULT_NORMALISER
from asr_distill.student.ggml import available_cores, export_ggml, transcribe_ggml
from asr_distill.teacher import load_teacher
from asr_distill.teacher.backends import cpu_has_bf16

RESULTS = Path(__file__).parent / "results" / "ggml_parity.json"
TOLERANCE = 0.3  # WER points


def _row(t, manifest: str) -> dict:
    result, _ = measure(t, manifest, DEFAULT_NORMALISER)
    return {
        "model": t.model,
        "wer": result.score.wer,
        "rtfx": round(t.rtfx, 2),
        "wall_s": t.wall_s,
        "audio_s": t.audio_s,
        "utterances": len(t.ids),
        "skipped": t.skipped,
        "params": t.params,
    }


def _machine() -> dict:
    import _pywhispercpp as pw
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "threads": available_cores(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_bf16_units": cpu_has_bf16(),
        "whisper_cpp_system_info": pw.whisper_print_system_info().strip(),
    }


def main() -> None:
    """Export, decode both ways, write the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    teacher = load_teacher(args.model)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_ggml(
            teacher.model, Path(tmp) / "model.bin", {}, tokenizer_multilingual=teacher.is_multilingual
        )
        size_mb = round(path.stat().st_size / 1e6, 1)
        ggml = _row(transcribe_ggml(path, args.manifest, name=f"{args.model}-ggml"), args.manifest)
    load_mid = os.getloadavg()
    torch_row = _row(transcribe(teacher, args.manifest, device="cpu"), args.manifest)
    diff = round(ggml["wer"] - torch_row["wer"], 2)
    result = {
        "manifest": args.manifest,
        "model": args.model,
        "normaliser": DEFAULT_NORMALISER,
        "wer_pytorch": torch_row["wer"],
        "wer_ggml": ggml["wer"],
        "wer_diff": diff,
        "within_tolerance": abs(diff) <= TOLERANCE,
        "tolerance": TOLERANCE,
        "rtfx_pytorch": torch_row["rtfx"],
        "rtfx_ggml": ggml["rtfx"],
        "ggml_size_mb": size_mb,
        "systems": [torch_row, ggml],
        "load_average_1min": {"start": load_before[0], "after_ggml": load_mid[0], "end": os.getloadavg()[0]},
        "machine": _machine(),
        "command": "python " + " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    keys = ("wer_pytorch", "wer_ggml", "wer_diff", "rtfx_pytorch", "rtfx_ggml")
    print(json.dumps({k: result[k] for k in keys}))


if __name__ == "__main__":
    main()
