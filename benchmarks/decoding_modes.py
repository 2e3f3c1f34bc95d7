"""How much a model's WER depends on how it is decoded: encoder window and timestamp mode.

Students decode in their own windows (clip length + margin, or a floor) and, unless trained
on timestamped segments, after ``<|notimestamps|>``; the baselines decode at a 10 s floor in
Whisper's timestamp mode. This decodes one model in all four combinations with evaluation's
guarded search, on each named manifest, so a student's out-of-domain gap can be split into
what its decoding costs the starting model and what training changed.

    python benchmarks/decoding_modes.py [--model tiny.en] [--set an4=PATH ...]

Writes ``benchmarks/results/decoding_modes.json``: per set and mode, ``wer`` (percent,
``format_insensitive``), ``insertions``, ``deletions``, ``substitutions``, ``ref_words``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asr_distill.evaluate.decoding import transcribe
from asr_distill.jsonl import atomic_write_text
from asr_distill.metrics import word_error_rate
from asr_distill.student.short_context import WindowPolicy
from asr_distill.teacher import load_teacher
from asr_distill.teacher.options import ContextFloor, LabelOptions, guarded

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_throughput import ROOT, machine  # noqa: E402  (the shared machine record)

RESULTS = ROOT / "benchmarks" / "results" / "decoding_modes.json"
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_SETS = {
    "an4": SHARED / "an4" / "test.jsonl",
    "speechocean762": SHARED / "speechocean762" / "test.jsonl",
}
NORMALISER = "format_insensitive"
MODES = {  # name: (windows, timestamps); the first is how evaluation decodes Whisper itself
    "floor10_timestamps": (ContextFloor(10.0), True),
    "floor10_no_timestamps": (ContextFloor(10.0), False),
    "short_windows_no_timestamps": (WindowPolicy(), False),  # a student's default decoding
    "short_windows_timestamps": (WindowPolicy(), True),
}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=PATH", help="default: AN4 and speechocean762 test"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args()


def main() -> None:
    args = _args()
    sets = (
        dict(s.split("=", 1) for s in args.set) if args.set else {k: str(v) for k, v in DEFAULT_SETS.items()}
    )
    teacher = load_teacher(args.model, device="cpu")
    out: dict = {"model": args.model, "normaliser": NORMALISER, "sets": {}}
    for name, path in sets.items():
        if not Path(path).is_file():
            print(f"skipping {name}: {path} is not there", file=sys.stderr)
            continue
        rows = out["sets"][name] = {"manifest": str(path)}
        for mode, (windows, ts) in MODES.items():
            options = guarded(LabelOptions(windows=windows, timestamps=ts))
            tr = transcribe(teacher, path, options=options, device="cpu")
            w = word_error_rate(tr.refs, tr.hyps, NORMALISER)
            rows[mode] = {
                "wer": round(w.wer, 2),
                "insertions": w.insertions,
                "deletions": w.deletions,
                "substitutions": w.substitutions,
                "ref_words": w.ref_words,
                "utterances": len(tr.refs),
                "wall_s": tr.wall_s,
            }
            print(name, mode, rows[mode], flush=True)
    out["modes"] = {m: {"windows": repr(w), "timestamps": ts} for m, (w, ts) in MODES.items()}
    out["machine"] = machine(teacher, "cpu")
    out["command"] = "python benchmarks/decoding_modes.py " + " ".join(sys.argv[1:])
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
