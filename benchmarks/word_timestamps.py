"""The cost of word timestamps: labeling with and without ``word_timestamps``, side by side.

Both settings label the same AN4 test clips with the same teacher in one process, in
interleaved rounds (each labels a slice, then the next slice), so a machine that gets busier
during the run slows both alike. Word timing adds one teacher-forced decoder pass per batch
and a DTW per clip; the decoded text must not change (the count of differing texts is kept).

    python benchmarks/word_timestamps.py [--model base] [--clips 30] [--rounds 3]

Writes ``benchmarks/results/word_timestamps.json``: ``ratio`` is wall time with word
timestamps over wall time without; ``ratio_cpu`` the same for this process's CPU time, the
steadier figure on a machine other jobs share (the load average is recorded beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from asr_distill.jsonl import atomic_write_text
from asr_distill.label import LabelRun, label
from asr_distill.manifest import read_manifest
from asr_distill.records import TeacherLabel, Utterance
from asr_distill.teacher import load_teacher
from asr_distill.teacher.options import LabelOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_throughput import ROOT, _write_manifest, machine  # noqa: E402  (the shared machine record)

RESULTS = ROOT / "benchmarks" / "results" / "word_timestamps.json"
AN4 = ROOT.parent / "shared" / "data" / "an4" / "test.jsonl"


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--backend", default="whisper", help="whisper or faster-whisper")
    ap.add_argument("--manifest", type=Path, default=AN4)
    ap.add_argument("--clips", type=int, default=30, help="the first N clips of the manifest")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args()


def _timed(manifest: Path, run: LabelRun) -> tuple[list[TeacherLabel], float, float]:
    """Labels, wall seconds and CPU seconds (this process, all threads) of one labeling run."""
    t, cpu = time.perf_counter(), time.process_time()
    records = list(label(manifest, run))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    labels = [r for r in records if isinstance(r, TeacherLabel)]
    assert len(labels) == len(records), "benchmark inputs were skipped"
    return labels, wall, cpu


def _rounds(runs: dict[str, LabelRun], utts: list, rounds: int):
    """Each setting labels one slice, then the next; labels, summed wall and CPU seconds per setting."""
    got: dict[str, list[TeacherLabel]] = {name: [] for name in runs}
    wall, cpu = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0.0)
    for r in range(rounds):
        part = _write_manifest(utts[r::rounds], ROOT / ".cache" / "bench_words" / f"round{r}.jsonl")
        for name, run in runs.items():
            labels, w, c = _timed(part, run)
            got[name] += labels
            wall[name] += w
            cpu[name] += c
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {w:.1f}s" for n, w in wall.items()), flush=True)
    return got, wall, cpu


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    utts = [u for u in read_manifest(args.manifest) if isinstance(u, Utterance)][: args.clips]
    audio_s = sum(u.duration for u in utts)
    teacher = load_teacher(args.model)
    runs = {
        name: LabelRun(teacher, args.backend, LabelOptions(word_timestamps=flag), batch_size=args.batch_size)
        for name, flag in (("without", False), ("with", True))
    }
    warm = _write_manifest(utts[:2], ROOT / ".cache" / "bench_words" / "warm.jsonl")
    t = time.perf_counter()
    _timed(warm, runs["with"])  # also compiles whisper's DTW (numba), once per process
    first_call_s = time.perf_counter() - t
    _timed(warm, runs["without"])
    load_before = os.getloadavg()
    got, wall, cpu = _rounds(runs, utts, args.rounds)
    by_id = {lab.id: lab for lab in got["without"]}
    words = [len(lab.words) for lab in got["with"]]
    result = {
        "model": args.model,
        "backend": args.backend,
        "utterances": len(utts),
        "audio_s": round(audio_s, 2),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "wall_s_without": round(wall["without"], 2),
        "wall_s_with": round(wall["with"], 2),
        "rtfx_without": round(audio_s / wall["without"], 2),
        "rtfx_with": round(audio_s / wall["with"], 2),
        "ratio": round(wall["with"] / wall["without"], 3),
        "cpu_s_without": round(cpu["without"], 2),
        "cpu_s_with": round(cpu["with"], 2),
        "ratio_cpu": round(cpu["with"] / cpu["without"], 3),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],  # before, after
        "first_call_s_with": round(first_call_s, 2),
        "texts_changed": sum(lab.text != by_id[lab.id].text for lab in got["with"]),
        "words_timed": sum(words),
        "labels_without_words": sum(n == 0 for n in words),
        "machine": machine(teacher, "cpu"),
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    keys = ("ratio", "ratio_cpu", "wall_s_without", "wall_s_with", "texts_changed", "load_average_1min")
    print(json.dumps({k: result[k] for k in keys}))


if __name__ == "__main__":
    main()
