"""One AN4 student in every export format, side by side: WER, RTFx and size on AN4 test.

    python benchmarks/export.py [--labels LABELS] [--run-dir runs/bench_export]
        [--max-time 00:00:15:00] [--teacher base] [--threads 2]

Stages (each skipped when its output exists, so a rerun after a kill resumes):
1. label AN4 train with the teacher (``asr-distill label``), unless ``--labels`` is given;
2. train the student (``configs/student_an4.yaml``: tiny.en adapted, frozen encoder, short
   windows) within ``--max-time``, as ``benchmarks/student.py`` does;
3. export its best checkpoint with one ``asr-distill export`` to ``.pt``, CTranslate2,
   ONNX and GGML;
4. decode AN4 test with each format through :func:`asr_distill.evaluate.transcribe`, one after
   another in this process, all in the student's own window policy with evaluation's guarded
   search: the ``.pt`` with PyTorch, the CTranslate2 folder with faster-whisper (int8, as it
   runs by default on CPU), the ONNX folder with ONNX Runtime, the GGML file with whisper.cpp.

Writes ``benchmarks/results/export.json``: ``{"pytorch": F, "ct2": F, "onnx": F, "ggml": F}``
with ``F = {"wer", "rtfx", "size_mb"}`` (WER in percent, format_insensitive; RTFx = audio
seconds / wall seconds of decoding, model loading excluded; size of the files on disk), the
machine beside the speed figures, and the command. A format that cannot run here is ``null``
with the reason under ``unavailable``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from asr_distill.jsonl import atomic_write_text
from asr_distill.metrics import word_error_rate
from asr_distill.pipeline import best_checkpoint

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "export.json"
CLI = [sys.executable, "-m", "asr_distill.cli"]
AN4 = ROOT.parent / "shared" / "data" / "an4"
FORMATS = ("pytorch", "ct2", "onnx", "ggml")


def labels(args, run: Path) -> Path:
    """The teacher's labels of AN4 train (written once)."""
    if args.labels:
        return Path(args.labels).resolve()
    out = run / f"train.{args.teacher}.jsonl"
    if not out.is_file():
        run.mkdir(parents=True, exist_ok=True)
        cmd = [*CLI, "label", str(AN4 / "train.jsonl"), "--out", str(out), "--model", args.teacher]
        subprocess.run(cmd, check=True)
    return out


def train_student(args, run: Path, train_labels: Path) -> Path:
    """``benchmarks/student.py``'s training stage (a rerun resumes); the best checkpoint."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from student import train, train_dir  # the same stage, not a copy of it

    ckpts = train_dir(run) / "checkpoints"
    if not args.skip_train:
        opts = SimpleNamespace(
            config=args.config,
            labels=str(train_labels),
            cache_dir=None,
            augment_copies=0,
            max_time=args.max_time,
            train_args=args.train_args,
        )
        train(opts, run)
    return best_checkpoint(ckpts)


def ggml_available() -> str | None:
    """Why the GGML export cannot run here, or None."""
    try:
        from asr_distill.student.ggml import export_ggml, transcribe_ggml  # noqa: F401
    except ImportError as e:
        return f"asr_distill.student.ggml is not importable: {e}"
    try:
        import _pywhispercpp  # noqa: F401
    except ImportError as e:
        return f"pywhispercpp is not installed: {e}"
    return None


def export_all(ckpt: Path, run: Path, with_ggml: bool) -> dict[str, Path]:
    """Every format from one ``asr-distill export`` (skipped when all are there)."""
    paths = {
        "pytorch": run / "student.pt",
        "ct2": run / "student_ct2",
        "onnx": run / "student_onnx",
        "ggml": run / "student.ggml",
    }
    if not with_ggml:
        del paths["ggml"]
    if not all(p.exists() for p in paths.values()):
        cmd = [*CLI, "export", str(ckpt), "--out", str(paths["pytorch"]), "--ct2", str(paths["ct2"])]
        cmd += ["--onnx", str(paths["onnx"])] + (["--ggml", str(paths["ggml"])] if with_ggml else [])
        subprocess.run(cmd, check=True)
    return paths


def size_mb(path: Path) -> float:
    """Bytes on disk of a file, or of every file in a folder, in MB (10^6)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 1)


def measure(fmt: str, path: Path, test: Path, options) -> dict:
    """Decode the test set with one format and score it."""
    from asr_distill.evaluate import transcribe

    backend = "faster-whisper" if fmt == "ct2" else "whisper"
    start = time.perf_counter()
    t = transcribe(
        path, test, name=fmt, options=None if fmt == "ggml" else options, backend=backend, device="cpu"
    )
    total = time.perf_counter() - start
    wer = word_error_rate(t.refs, t.hyps, "format_insensitive")
    row = {
        "wer": round(wer.wer, 2),
        "rtfx": round(t.rtfx, 2),
        "size_mb": size_mb(path),
        "utterances": len(t.ids),
        "audio_s": t.audio_s,
        "wall_s": t.wall_s,
        "wall_s_with_loading": round(total, 2),
        "params": t.params,
        "substitutions": wer.substitutions,
        "deletions": wer.deletions,
        "insertions": wer.insertions,
    }
    print(f"{fmt:>8}: WER {row['wer']:.2f}%  RTFx {row['rtfx']:.1f}  {row['size_mb']} MB", flush=True)
    return row


def machine(threads: int) -> dict:
    """The machine beside the speed figures (CPU model and flags: ``teacher.precision.machine``)."""
    import ctranslate2
    import onnxruntime

    from asr_distill.teacher.precision import machine as cpu_machine

    return cpu_machine() | {
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "onnxruntime": onnxruntime.__version__,
        "ctranslate2": ctranslate2.__version__,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=None, help="pseudo-labels of AN4 train (default: label them)")
    p.add_argument("--teacher", default="base", help="the labeling teacher when --labels is not given")
    p.add_argument("--test", default=str(AN4 / "test.jsonl"))
    p.add_argument("--config", default=str(ROOT / "configs" / "student_an4.yaml"))
    p.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_export"))
    p.add_argument("--max-time", default="00:00:15:00", help="training budget DD:HH:MM:SS")
    p.add_argument("--train-args", default="", help="extra overrides for asr-distill train")
    p.add_argument("--skip-train", action="store_true", help="use the run folder's checkpoints as they are")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args()
    if not Path(args.test).is_file():
        raise SystemExit(f"error: AN4 test manifest {args.test} not found (give --test)")
    torch.set_num_threads(args.threads)
    run, test = Path(args.run_dir).resolve(), Path(args.test)
    ckpt = train_student(args, run, labels(args, run))
    why_not_ggml = ggml_available()
    paths = export_all(ckpt, run, with_ggml=why_not_ggml is None)

    from asr_distill.evaluate import guarded
    from asr_distill.student.export import student_teacher

    options = guarded(student_teacher(paths["pytorch"])[1])  # the student's windows, every format
    result: dict = {"command": "python benchmarks/export.py " + " ".join(sys.argv[1:])}
    result["machine"] = machine(args.threads)
    for fmt in FORMATS:
        result[fmt] = measure(fmt, paths[fmt], test, options) if fmt in paths else None
    result |= {
        "unavailable": {"ggml": why_not_ggml} if why_not_ggml else {},
        "normaliser": "format_insensitive",
        "test_manifest": str(test),
        "checkpoint": str(ckpt),
        "decoding": options.as_dict(),
        "ct2_compute_type": "int8",
    }
    bar = {f: round(result[f]["wer"] - result["pytorch"]["wer"], 2) for f in ("onnx", "ggml") if result[f]}
    result["wer_minus_pytorch"] = bar
    result["bar_met"] = all(abs(d) <= 0.3 for d in bar.values()) and len(bar) == 2
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(result, indent=2) + "\n")
    print(
        json.dumps({f: result[f] and {k: result[f][k] for k in ("wer", "rtfx", "size_mb")} for f in FORMATS})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
