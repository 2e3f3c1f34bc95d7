"""Student vs teacher vs off-the-shelf tiny.en on AN4 test: WER, RTFx, parameters, in one run.

    python benchmarks/student.py --labels runs/an4/train.base.jsonl [--config configs/student_an4.yaml]
        [--run-dir runs/bench_student] [--max-time 00:00:45:00] [--skip-train]

Stages (each skipped when its output exists, so a rerun after a kill resumes):
1. train the student with ``asr-distill train`` (a rerun resumes from last.ckpt);
2. export the best checkpoint with ``asr-distill export`` (.pt + CTranslate2);
3. measure the frozen-encoder vs full step time on one batch;
4. decode AN4 test with every system through the batched labeler (``label()``), one after
   another in this process: teacher base and tiny.en at their fastest short context (10 s
   for short clips, 30 s fallback), the student in its short windows, the
   same student padded to 30 s, the student's Lightning checkpoint before export, and the
   CTranslate2 export through faster-whisper.

Writes ``benchmarks/results/student.json``: WER in percent (format_insensitive, the bars'
normaliser; whisper_en beside it), RTFx = audio seconds / wall seconds including audio
loading, parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from asr_distill.jsonl import atomic_write_text, read_jsonl
from asr_distill.label import LabelRun, label
from asr_distill.metrics import word_error_rate
from asr_distill.pipeline import best_checkpoint
from asr_distill.records import TeacherLabel
from asr_distill.teacher import Teacher, load_teacher
from asr_distill.teacher.backends import encode_mels
from asr_distill.teacher.options import ContextFloor, LabelOptions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "student.json"
CLI = [sys.executable, "-m", "asr_distill.cli"]
SYSTEMS = (
    "teacher",
    "tiny_en",
    "student",
    "student_padded_30s",
    "student_checkpoint",
    "teacher_ct2_int8",
    "student_ct2_int8",
)


def train_dir(run: Path) -> Path:
    """Where ``asr-distill train`` writes (its own folder: it refuses one holding files it did not write)."""
    return run / "train"


def _run_config(args, run: Path) -> Path:
    """The user's config with this run's paths: labels, run folder, cache, time budget."""
    cfg = yaml.safe_load(Path(args.config).read_text())
    cfg["data"]["train_manifest"] = str(Path(args.labels).resolve())
    cache = Path(args.cache_dir).resolve() if args.cache_dir else run / "feature_cache"
    cfg["data"]["cache_dir"] = str(cache)
    cfg["data"]["augment_copies"] = args.augment_copies
    t = cfg["trainer"]
    t["default_root_dir"] = str(train_dir(run))
    t["max_time"] = args.max_time
    t["logger"]["init_args"]["save_dir"] = str(train_dir(run))
    for cb in t["callbacks"]:
        if cb["class_path"].endswith("ModelCheckpoint"):
            cb["init_args"]["dirpath"] = str(train_dir(run) / "checkpoints")
    path = run / "bench_config.yaml"
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train(args, run: Path) -> dict:
    cfg = _run_config(args, run)
    log_path = run / "train.log"
    cmd = [*CLI, "train", "--config", str(cfg), *shlex.split(args.train_args)]
    start = time.perf_counter()
    with open(log_path, "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = round(time.perf_counter() - start, 1)
    return {"command": "asr-distill " + " ".join(cmd[3:]), "wall_s": wall, "log": str(log_path)}


def training_summary(run: Path) -> dict:
    rows = [
        r
        for path in [
            train_dir(run) / "metrics.csv",
            *sorted((train_dir(run) / "logs").glob("version_*/metrics.csv")),
        ]
        for r in _csv(path)
    ]
    vals = [(int(r["epoch"]), float(r["val/wer"])) for r in rows if r.get("val/wer")]
    steps = [int(r["step"]) for r in rows if r.get("step")]
    return {
        "epochs_validated": len(vals),
        "val_wer_by_epoch": [round(w, 2) for _, w in vals],
        "steps": max(steps) + 1 if steps else 0,
    }


def _csv(path: Path):
    import csv

    if path.is_file():
        with open(path) as f:
            yield from csv.DictReader(f)


def export(run: Path) -> tuple[Path, Path, Path]:
    ckpt = best_checkpoint(train_dir(run) / "checkpoints")
    pt, ct2_dir = run / "student.pt", run / "student_ct2"
    if not pt.is_file() or not (ct2_dir / "model.bin").is_file():
        subprocess.run([*CLI, "export", str(ckpt), "--out", str(pt), "--ct2", str(ct2_dir)], check=True)
    return ckpt, pt, ct2_dir


def step_times(ckpt: Path, labels: Path, n: int = 3) -> dict:
    """Seconds per training step (loss as configured, forward + backward, batch 8).

    With cached encoder outputs vs recomputing the encoder (trainable), at the student's short
    window and at 30 s.
    """
    from asr_distill.student.data import StudentDataset, collate, mel_features, read_items
    from asr_distill.student.export import load_student_checkpoint

    module = load_student_checkpoint(ckpt)
    spec = module.feature_spec()
    items = read_items(labels)
    window = spec.policy.window_for(items[0].duration)
    batch_items = [it for it in items if spec.policy.window_for(it.duration) == window][:8]
    ds = StudentDataset(batch_items, spec, 128, None)
    out = {}
    for name, win in (("short_window", window), ("window_30s", 30.0)):
        mels = mel_features(batch_items, win, module.model.dims.n_mels, [None] * len(batch_items), None)
        samples = [
            {"text": it.text, "tokens": t, "mel": m}
            for it, t, m in zip(batch_items, ds.tokens, mels, strict=True)
        ]
        b = collate(samples, spec.tokenizer.eot, len(spec.prefix))
        with torch.no_grad():
            feats = encode_mels(module.model, mels)
        timings = {}
        for mode in ("cached_features", "recomputed_encoder"):
            cached = mode == "cached_features"
            for p in module.model.encoder.parameters():
                p.requires_grad_(not cached)
            module.zero_grad()
            t0 = time.perf_counter()
            for _ in range(n):
                _step_loss(module, b, feats if cached else None).backward()
            timings[mode] = round((time.perf_counter() - t0) / n, 3)
        timings["ratio"] = round(timings["recomputed_encoder"] / timings["cached_features"], 2)
        out[name] = {"window_s": win, **timings}
    return out


def _step_loss(module, batch: dict, feats: torch.Tensor | None) -> torch.Tensor:
    """The training loss of ``StudentModule.shared_step`` without a Trainer (no logging)."""
    from asr_distill.student.module import distillation_kl

    if feats is None:
        feats = encode_mels(module.model, batch["mel"])
    logits = module.model.decoder(batch["tokens"], feats)
    targets = batch["targets"]
    loss = module.hparams.ce_weight * torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), targets, ignore_index=-100
    )
    if module._teacher is not None:
        with torch.no_grad():
            t_logits = module._teacher.decoder(batch["tokens"], feats.detach())
        loss = loss + module.hparams.kl_weight * distillation_kl(
            logits, t_logits, (targets != -100).float(), module.hparams.temperature
        )
    return loss


def evaluate(
    name: str,
    teacher: Teacher,
    test: Path,
    options: LabelOptions,
    backend: str = "whisper",
    batch_size: int = 8,
) -> dict:
    """Decode the test set through the labeler and score it; RTFx over the whole loop."""
    expected = sum(1 for _ in read_jsonl(test))
    start = time.perf_counter()
    records = [
        r for r in label(test, LabelRun(teacher, backend, options, batch_size)) if isinstance(r, TeacherLabel)
    ]
    wall = time.perf_counter() - start
    audio_s = sum(r.duration for r in records)
    ref = [r.ref_text for r in records]
    hyp = [r.text for r in records]
    fi = word_error_rate(ref, hyp, "format_insensitive")
    en = word_error_rate(ref, hyp, "whisper_en")
    windows: dict[str, int] = {}
    for r in records:
        windows[f"{r.window_s:g}"] = windows.get(f"{r.window_s:g}", 0) + 1
    result = {
        "wer": round(fi.wer, 2),
        "wer_whisper_en": round(en.wer, 2),
        "rtfx": round(audio_s / wall, 2),
        "params": sum(p.numel() for p in teacher.model.parameters()),
        "utterances": len(records),
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 2),
        "windows": windows,
        "substitutions": fi.substitutions,
        "deletions": fi.deletions,
        "insertions": fi.insertions,
        "ref_words": fi.ref_words,
        "backend": backend,
    }
    assert len(records) == expected, f"{name}: {len(records)} of {expected} test clips decoded"
    print(
        f"{name:>22}: WER {result['wer']:.2f}% (whisper_en {result['wer_whisper_en']:.2f}%), "
        f"RTFx {result['rtfx']:.1f}, windows {windows}",
        flush=True,
    )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=str(ROOT / "runs" / "an4" / "train.base.jsonl"))
    p.add_argument("--test", default=str(ROOT.parent / "shared" / "data" / "an4" / "test.jsonl"))
    p.add_argument("--config", default=str(ROOT / "configs" / "student_an4.yaml"))
    p.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_student"))
    p.add_argument("--max-time", default="00:00:45:00", help="training budget DD:HH:MM:SS")
    p.add_argument(
        "--augment-copies",
        type=int,
        default=0,
        help="SpecAugment copies cached per clip; each costs one more encoder pass over the "
        "training set (default 0: on 2 shared cores the 60 min budget goes to epochs)",
    )
    p.add_argument(
        "--train-args",
        default="",
        help="extra overrides for asr-distill train, e.g. '--model.decoder_layers 4'",
    )
    p.add_argument("--cache-dir", default=None, help="feature cache shared by runs (default: in the run)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    p.add_argument("--results", default=str(RESULTS), help="where the JSON goes")
    p.add_argument("--skip-step-times", action="store_true", help="do not time cached vs full steps")
    p.add_argument("--skip-train", action="store_true", help="use the run folder's checkpoints as they are")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run, test = Path(args.run_dir).resolve(), Path(args.test)
    result: dict = {
        "command": "python benchmarks/student.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_threads": args.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "gpu": torch.cuda.is_available(),
        },
        "normaliser": "format_insensitive",
        "normaliser_also": "whisper_en",
        "test_manifest": str(test),
        "labels": str(Path(args.labels).resolve()),
    }
    if not args.skip_train:
        result["training"] = train(args, run)
    result.setdefault("training", {}).update(training_summary(run))
    ckpt, pt, ct2_dir = export(run)
    result["checkpoint"] = str(ckpt)
    if not args.skip_step_times:
        result["step_time_s"] = step_times(ckpt, Path(args.labels))
        print("step times", result["step_time_s"], flush=True)

    from asr_distill.student.export import load_student_checkpoint, student_teacher

    base, tiny = load_teacher("base"), load_teacher("tiny.en")
    student, options = student_teacher(pt)
    module = load_student_checkpoint(ckpt)
    in_training = Teacher("student-ckpt", module.model.eval(), "lightning-checkpoint", str(ckpt))
    # Off-the-shelf models at their fastest short context (10 s floor): the student's speed
    # bar is then measured against the quickest way to run the teacher.
    fastest = LabelOptions(windows=ContextFloor(10.0))
    padded = dataclasses.replace(options.windows, short=False)  # the student's policy, at 30 s
    systems = {
        "teacher": lambda: evaluate("teacher base", base, test, fastest),
        "tiny_en": lambda: evaluate("tiny.en", tiny, test, fastest),
        "student": lambda: evaluate("student (short window)", student, test, options),
        "student_padded_30s": lambda: evaluate(
            "student (padded 30 s)", student, test, dataclasses.replace(options, windows=padded)
        ),
        "student_checkpoint": lambda: evaluate("student (Lightning ckpt)", in_training, test, options),
        "teacher_ct2_int8": lambda: evaluate(
            "teacher base (CT2 int8)", base, test, fastest, backend="faster-whisper"
        ),
        "student_ct2_int8": lambda: evaluate(
            "student (CT2 int8)", load_teacher(ct2_dir), test, options, backend="faster-whisper"
        ),
    }
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.systems.split(","):
        result[name] = systems[name]()
        result["complete"] = False  # written after every system, so a killed run keeps what it measured
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    result["complete"] = True
    result["student"]["layout"] = module.layout.describe()
    t, s, tiny_r = result["teacher"], result["student"], result.get("tiny_en")
    result["speedup"] = round(s["rtfx"] / t["rtfx"], 2)
    bars = {
        "rtfx_ge_2x_teacher": s["rtfx"] >= 2 * t["rtfx"],
        "goal_rtfx_3x": s["rtfx"] >= 3 * t["rtfx"],
        "wer_le_teacher_plus_1": s["wer"] <= t["wer"] + 1.0,
    }
    if tiny_r:
        bars |= {
            "wer_le_0.85_tiny_en": s["wer"] <= 0.85 * tiny_r["wer"],
            "goal_wer_0.7_tiny_en": s["wer"] <= 0.7 * tiny_r["wer"],
        }
    if "student_padded_30s" in result:
        result["short_vs_padded_speedup"] = round(s["rtfx"] / result["student_padded_30s"]["rtfx"], 2)
    if "student_ct2_int8" in result:
        bars["ct2_within_0.3"] = abs(result["student_ct2_int8"]["wer"] - s["wer"]) <= 0.3
    if "teacher_ct2_int8" in result and "student_ct2_int8" in result:
        ct2_s, ct2_t = result["student_ct2_int8"], result["teacher_ct2_int8"]
        result["speedup_ct2"] = round(ct2_s["rtfx"] / ct2_t["rtfx"], 2)
    if "student_checkpoint" in result:
        bars["export_equals_checkpoint"] = result["student_checkpoint"]["wer"] == s["wer"]
    result["bars"] = bars
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    keys = ("speedup", "short_vs_padded_speedup", "speedup_ct2", "bars")
    print(json.dumps({k: result.get(k) for k in keys}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
