"""Labeling throughput: batched teacher vs sequential ``whisper.transcribe``, side by side.

Every system labels the same utterances with the same model in one process, one after
another, so the ratios are not skewed by a machine that got busier between runs. The peers
are openai-whisper's ``transcribe`` and faster-whisper's own ``WhisperModel.transcribe`` (int8,
greedy, its defaults otherwise), each called once per file; float32 and bf16 encoders run
beside ``--precision auto`` so the measured choice can be checked against both.

    python benchmarks/label_throughput.py [--model base] [--synthetic 100] [--an4 ../shared/data/an4]

On a GPU (``--device cuda``) the batched systems label each utterance ``--repeat`` times
under distinct ids (a GPU labels these 15 minutes of audio in seconds, mostly start-up), the
peers once, and every row carries the GPU's mean utilisation and peak memory while it ran.
Each system's RTFx counts the audio it labeled; WER is on the one copy every system labeled.

Writes ``benchmarks/results/label_throughput.json``. WER is in percent after Whisper's
English normaliser (``whisper_en``); the format-insensitive one is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import whisper

from asr_distill.jsonl import atomic_write_text
from asr_distill.label import LOADER_THREADS, LabelRun, label
from asr_distill.manifest import read_manifest
from asr_distill.metrics import word_error_rate
from asr_distill.records import Skip, TeacherLabel, Utterance
from asr_distill.teacher import load_teacher, precision
from asr_distill.teacher.backends import make_backend
from asr_distill.teacher.options import FULL_CONTEXT, ContextFloor, LabelOptions, parse_batch_size

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "label_throughput.json"
SEQUENTIAL = "sequential whisper.transcribe (greedy + fallback)"
DEFAULT = "batched, PyTorch backend, 20 s floor, encoder precision auto (shipped default)"
FP32 = "batched, PyTorch backend, 20 s floor, float32 encoder (--precision fp32)"
BF16 = "batched, PyTorch backend, 20 s floor, bfloat16 encoder (--precision bf16)"
FASTER = "batched, faster-whisper int8 backend, 20 s floor (--backend faster-whisper)"
FW_TRANSCRIBE = "faster-whisper WhisperModel.transcribe per file (int8, greedy)"
FP16 = "batched, float16 encoder and decoder (--precision fp16, GPU)"
GPU_BATCH_32 = "batched, batch 32 (the earlier GPU figure's setting), 20 s floor, precision auto"
FLOOR_15 = "batched, 15 s floor (--min-window 15)"
FLOOR_10 = "batched, 10 s floor (--min-window 10)"
COPY = "~copy"  # the id suffix of a repeated utterance (``--repeat``)


def _corpora(args) -> list[Path]:
    if args.manifests:
        return [Path(m) for m in args.manifests]
    manifests = []
    an4 = Path(args.an4) / "test.jsonl"
    if an4.is_file():
        manifests.append(an4)
    else:
        print(f"AN4 not found at {an4}: benchmarking on synthetic speech only", file=sys.stderr)
    if args.synthetic:
        from asr_distill.synth import write_corpus

        manifests.append(write_corpus(ROOT / ".cache" / "bench_synth", args.synthetic, seed=1))
    return manifests


def _utterances(manifests: list[Path]) -> list[Utterance]:
    utts = [u for m in manifests for u in read_manifest(m) if isinstance(u, Utterance)]
    assert all(u.text for u in utts), "benchmark manifests need reference transcripts"
    return utts


def _write_manifest(utts: list[Utterance], path: Path) -> Path:
    lines = [
        json.dumps({"id": u.id, "audio_filepath": u.audio_filepath, "duration": u.duration, "text": u.text})
        for u in utts
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_sequential(model, utts: list[Utterance]) -> tuple[dict[str, str], float]:
    """The baseline people run: ``whisper.transcribe`` one file at a time, greedy with fallback.

    Audio loading is inside the clock, as it is for the batched systems. On a GPU it runs
    in float16, ``transcribe``'s default there.
    """
    fp16 = next(model.parameters()).device.type == "cuda"
    from asr_distill.audio import load_audio

    hyps = {}
    t = time.perf_counter()
    for u in utts:
        audio = load_audio(u.audio_filepath, u.offset, u.duration)
        r = whisper.transcribe(model, audio, language="en", fp16=fp16, verbose=None)
        hyps[u.id] = r["text"].strip()
    return hyps, time.perf_counter() - t


def run_faster_whisper_transcribe(model, utts: list[Utterance]) -> tuple[dict[str, str], float]:
    """What most people run on a CPU: faster-whisper's ``transcribe``, one file at a time.

    int8, greedy (``beam_size=1``), English given as to every system here; everything else
    is faster-whisper's default (temperature fallback, conditioning on previous text, no VAD).
    Audio loading is inside the clock, as for the others.
    """
    from asr_distill.audio import load_audio

    hyps = {}
    t = time.perf_counter()
    for u in utts:
        audio = load_audio(u.audio_filepath, u.offset, u.duration)
        segments, _ = model.transcribe(audio, language="en", beam_size=1)  # type: ignore[attr-defined]
        hyps[u.id] = "".join(s.text for s in segments).strip()
    return hyps, time.perf_counter() - t


def run_batched(manifest: Path, run: LabelRun) -> tuple[dict[str, str], float]:
    """The label stage as shipped (model compute and audio loading both inside the clock)."""
    t = time.perf_counter()
    records = list(label(manifest, run))
    wall = time.perf_counter() - t
    skips = [r for r in records if isinstance(r, Skip)]
    assert not skips, f"benchmark inputs were skipped: {skips[:3]}"
    return {r.id: r.text for r in records if isinstance(r, TeacherLabel)}, wall


def _ids(manifest: Path) -> list[str]:
    return [u.id for u in read_manifest(manifest)]


def _score(name: str, refs, hyps, wall: float, audio_s: float, gpu: dict | None = None) -> dict:
    en = word_error_rate(refs, hyps, "whisper_en")
    fi = word_error_rate(refs, hyps, "format_insensitive")
    row = {
        "system": name,
        "wall_s": round(wall, 2),
        "audio_s": round(audio_s, 2),
        "rtfx": round(audio_s / wall, 2),
        "wer": round(en.wer, 2),
        "wer_format_insensitive": round(fi.wer, 2),
    }
    if gpu is not None:
        samples = gpu["samples"]
        row["gpu_util_pct"] = round(sum(samples) / len(samples), 1) if samples else None
        row["gpu_mem_peak_gb"] = gpu["peak"]
    print(json.dumps(row), flush=True)
    return row


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--synthetic", type=int, default=100)
    ap.add_argument("--an4", default=str(ROOT.parent / "shared" / "data" / "an4"))
    ap.add_argument(
        "--batch-size",
        type=parse_batch_size,
        default="auto",
        help="auto: 8 on a CPU, from free memory on a GPU",
    )
    ap.add_argument("--loader-threads", type=int, default=LOADER_THREADS, help="audio decoding threads")
    ap.add_argument("--repeat", type=int, default=1, help="batched systems label each utterance this often")
    ap.add_argument("--batch-sweep", type=int, nargs="*", default=[], help="also run these batch sizes")
    ap.add_argument("--no-floors", action="store_true", help="leave out the 15 s and 10 s floor rows")
    ap.add_argument("--profile", help="write a cProfile of the default system on the first slice here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--levers",
        action="store_true",
        help="also run each speed lever alone (batching, short context, int8): 2x longer",
    )
    ap.add_argument("--rounds", type=int, default=4, help="interleave systems over this many slices")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the issue's bar is for 2 CPU cores)")
    ap.add_argument("--manifests", nargs="*", help="label these manifests (with references) instead")
    ap.add_argument("--out", default=str(RESULTS))
    return ap.parse_args()


def _faster_whisper_model(teacher, args) -> tuple[object | None, str | None]:
    """faster-whisper's own model on the teacher's CTranslate2 weights, or None and why not.

    int8 on a CPU; float16 on a GPU (its GPU default), where its CTranslate2 build must load.
    """
    if teacher.ct2_dir is None:
        return None, f"the teacher has no CTranslate2 folder ({teacher.source})"
    try:
        from faster_whisper import WhisperModel

        if args.device == "cpu":
            return WhisperModel(
                str(teacher.ct2_dir), device="cpu", compute_type="int8", cpu_threads=args.threads
            ), None
        return WhisperModel(str(teacher.ct2_dir), device="cuda", compute_type="float16"), None
    except (ImportError, OSError, RuntimeError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


def _systems(teacher, args, fw_model) -> dict:
    """Name -> a ``LabelRun`` for the batched labeler, or a function of the utterances for a peer."""
    b, threads = args.batch_size, args.loader_threads
    systems = {
        SEQUENTIAL: lambda utts: run_sequential(teacher.model, utts),
        FW_TRANSCRIBE: lambda utts: run_faster_whisper_transcribe(fw_model, utts),
        FASTER: LabelRun(
            teacher, "faster-whisper", LabelOptions(), b, device=args.device, loader_threads=threads
        ),
        DEFAULT: LabelRun(teacher, batch_size=b, loader_threads=threads),
        FP32: LabelRun(teacher, batch_size=b, precision="fp32", loader_threads=threads),
        BF16: LabelRun(teacher, batch_size=b, precision="bf16", loader_threads=threads),
        GPU_BATCH_32: LabelRun(teacher, batch_size=32, loader_threads=threads),
        FP16: LabelRun(teacher, batch_size=b, precision="fp16", loader_threads=threads),
        FLOOR_15: LabelRun(
            teacher, options=LabelOptions(windows=ContextFloor(15.0)), batch_size=b, loader_threads=threads
        ),
        FLOOR_10: LabelRun(
            teacher, options=LabelOptions(windows=ContextFloor(10.0)), batch_size=b, loader_threads=threads
        ),
    }
    if args.no_floors:
        del systems[FLOOR_15], systems[FLOOR_10]
    for size in args.batch_sweep:
        systems[f"batched, batch {size}, 20 s floor, precision auto"] = LabelRun(
            teacher, batch_size=size, loader_threads=threads
        )
    if fw_model is None:
        del systems[FW_TRANSCRIBE]
    if args.device == "cpu":  # the earlier GPU setting and the float16 decoder: GPU only
        del systems[GPU_BATCH_32], systems[FP16]
    else:  # the batched CTranslate2 backend is a CPU lever; faster-whisper's own transcribe stays
        del systems[FASTER]
    if "bf16" not in precision.candidates(torch.device(args.device)):  # bf16 emulated: not a candidate
        del systems[BF16]
    if args.levers:  # each lever on its own, to see what wins
        systems.update(
            {
                "batched, full 30 s context": LabelRun(
                    teacher, options=LabelOptions(windows=FULL_CONTEXT), batch_size=b
                ),
                "batch 1, 20 s floor": LabelRun(teacher, batch_size=1),
                "faster-whisper int8, batched, 10 s floor": LabelRun(
                    teacher, "faster-whisper", LabelOptions(windows=ContextFloor(10.0)), b
                ),
                "faster-whisper int8, batched, full 30 s context": LabelRun(
                    teacher, "faster-whisper", LabelOptions(windows=FULL_CONTEXT), b
                ),
            }
        )
    return systems


def _copies(utts: list[Utterance], repeat: int) -> list[Utterance]:
    """``utts`` then ``repeat - 1`` more copies under distinct ids (a copy's id ends in ``COPY``k)."""
    extra = [replace(u, id=f"{u.id}{COPY}{k}") for k in range(1, repeat) for u in utts]
    return [*utts, *extra]


class GpuSampler:
    """The GPU's utilisation (percent, sampled every 50 ms by NVML) and peak memory over a block.

    On a CPU, or where NVML cannot be read, no samples are taken.
    """

    def __init__(self, device: str):
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._handle = None
        if device.startswith("cuda"):
            try:
                import pynvml

                pynvml.nvmlInit()
                index = torch.device(device).index or 0
                self._handle, self._nvml = pynvml.nvmlDeviceGetHandleByIndex(index), pynvml
            except Exception as e:  # noqa: BLE001 - NVML is optional: the row just lacks the figure
                print(f"GPU utilisation not sampled: {e}")

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if self._handle is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._stop.set()
            self._thread.join()
            self._stop.clear()

    def peak_gb(self) -> float:
        """Peak GPU memory torch allocated over the block, in GiB (0 on a CPU)."""
        if not self.device.startswith("cuda"):
            return 0.0
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _run_rounds(systems: dict, ids: list[str], by_id: dict, rounds: int, repeat: int, device: str):
    """Every system labels one slice of the data, then the next one.

    A machine that gets busier or quieter during the run then affects all systems alike.
    The batched systems label each slice ``repeat`` times over (distinct ids), the peers once.
    Returns each system's hypotheses for the original ids, wall seconds, audio seconds labeled
    and GPU figures (utilisation samples pooled over the rounds, the highest peak memory).
    """
    hyps: dict[str, dict[str, str]] = {name: {} for name in systems}
    wall = dict.fromkeys(systems, 0.0)
    audio = dict.fromkeys(systems, 0.0)
    gpu: dict[str, dict] = {name: {"samples": [], "peak": 0.0} for name in systems}
    for r in range(rounds):
        part_utts = [by_id[i] for i in ids[r::rounds]]
        folder = ROOT / ".cache" / "bench_label"
        part = _write_manifest(part_utts, folder / f"round{r}.jsonl")
        repeated = _write_manifest(_copies(part_utts, repeat), folder / f"round{r}_x{repeat}.jsonl")
        for name, run in systems.items():
            with GpuSampler(device) as sampler:
                if isinstance(run, LabelRun):
                    out, w = run_batched(repeated, run)
                    audio[name] += repeat * sum(u.duration for u in part_utts)
                else:
                    out, w = run(list(read_manifest(part)))
                    audio[name] += sum(u.duration for u in part_utts)
            hyps[name].update({i: t for i, t in out.items() if COPY not in i})
            wall[name] += w
            gpu[name]["samples"] += sampler.samples
            gpu[name]["peak"] = max(gpu[name]["peak"], sampler.peak_gb())
        print(
            f"round {r + 1}/{rounds}: " + ", ".join(f"{n[:24]} {w:.0f}s" for n, w in wall.items()),
            flush=True,
        )
    return hyps, wall, audio, gpu


def _profile(run: LabelRun, ids: list[str], by_id: dict, args) -> None:
    """Where the default system's time goes on one slice (cumulative, top 40), for the notes."""
    import cProfile
    import io
    import pstats

    utts = _copies([by_id[i] for i in ids[:: args.rounds]], args.repeat)
    part = _write_manifest(utts, ROOT / ".cache" / "bench_label" / "profile.jsonl")
    prof = cProfile.Profile()
    prof.enable()
    run_batched(part, run)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    Path(args.profile).write_text(out.getvalue())


def machine(teacher, device: str) -> dict:
    """The machine beside each speed figure: CPU model and flags, torch, and the precision probe."""
    dev = torch.device(device)
    probe = precision.load_decisions()[0].get(precision.current_key(teacher, dev))
    return {
        **precision.machine(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "precision_probe": asdict(probe) if probe else None,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _result(args, rows: list[dict], teacher, ids: list[str], audio_s: float) -> dict:
    by_name = {r["system"]: r for r in rows}
    none = {"rtfx": None, "wer": None}
    seq, batched, faster = by_name[SEQUENTIAL], by_name[DEFAULT], by_name.get(FASTER, none)
    fw, fp32, bf16 = by_name.get(FW_TRANSCRIBE, none), by_name[FP32], by_name.get(BF16, none)
    engine = make_backend(teacher)  # what the shipped default resolves to on this machine
    return {
        "model": args.model,
        "utterances": len(ids),
        "audio_s": round(audio_s, 2),
        "batch_size": args.batch_size,
        "batch_size_auto": engine.auto_batch_size(),
        "threads": args.threads,
        "loader_threads": args.loader_threads,
        "repeat": args.repeat,
        "rounds": args.rounds,
        "rtfx_sequential": seq["rtfx"],
        "rtfx_batched": batched["rtfx"],
        "ratio": round(batched["rtfx"] / seq["rtfx"], 2),
        "wer_sequential": seq["wer"],
        "wer_batched": batched["wer"],
        "rtfx_batched_faster_whisper": faster["rtfx"],
        "ratio_faster_whisper": _ratio(faster["rtfx"], seq["rtfx"]),
        "wer_batched_faster_whisper": faster["wer"],
        "rtfx_faster_whisper_transcribe": fw["rtfx"],
        "wer_faster_whisper_transcribe": fw["wer"],
        "ratio_vs_faster_whisper_transcribe": _ratio(batched["rtfx"], fw["rtfx"]),
        "precision": engine.precision,
        "ratio_fp32_encoder": _ratio(fp32["rtfx"], seq["rtfx"]),
        "ratio_bf16_encoder": _ratio(bf16["rtfx"], seq["rtfx"]),
        "ratio_vs_batch_32": _ratio(batched["rtfx"], by_name.get(GPU_BATCH_32, none)["rtfx"]),
        "gpu_util_pct": batched.get("gpu_util_pct"),
        "auto_vs_fastest_precision": _ratio(batched["rtfx"], max(fp32["rtfx"], bf16["rtfx"] or 0)),
        "normaliser": "whisper_en",
        "systems": rows,
        "machine": machine(teacher, args.device),
        "command": "python " + " ".join(sys.argv),
    }


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)

    utts = _utterances(_corpora(args))
    manifest = _write_manifest(utts, ROOT / ".cache" / "bench_label" / "manifest.jsonl")
    ids = _ids(manifest)
    by_id = {u.id: u for u in read_manifest(manifest)}
    refs = [by_id[i].text for i in ids]
    audio_s = sum(by_id[i].duration for i in ids)
    teacher = load_teacher(args.model, device=args.device)
    print(f"{len(ids)} utterances, {audio_s / 60:.1f} min, model {args.model}, {args.threads} threads")

    # warm-up, so no system pays for first-call allocation (nor ``auto`` for its one-time probe)
    warm = list(read_manifest(manifest))[:2]
    if args.device == "cpu":
        list(label(manifest, LabelRun(teacher, batch_size=2, shard=(0, max(1, len(ids) // 4)))))
    else:  # a GPU also picks its kernels for the batch shapes it will see
        list(
            label(manifest, LabelRun(teacher, batch_size=args.batch_size, loader_threads=args.loader_threads))
        )
    fw_model, fw_why = _faster_whisper_model(teacher, args)
    if fw_model is not None:
        run_faster_whisper_transcribe(fw_model, warm)
    else:
        print(f"{FW_TRANSCRIBE}: not run: {fw_why}")
    print(f"precision auto -> {make_backend(teacher).precision} ({precision.cache_path()})")

    systems = _systems(teacher, args, fw_model)
    if args.profile:
        _profile(systems[DEFAULT], ids, by_id, args)
    hyps, wall, audio, gpu = _run_rounds(systems, ids, by_id, args.rounds, args.repeat, args.device)
    on_gpu = args.device.startswith("cuda")
    rows = [
        _score(
            name, refs, [hyps[name][i] for i in ids], wall[name], audio[name], gpu[name] if on_gpu else None
        )
        for name in systems
    ]
    result = _result(args, rows, teacher, ids, audio_s)
    result["faster_whisper_transcribe_not_run"] = fw_why
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    keys = ("ratio", "ratio_vs_faster_whisper_transcribe", "auto_vs_fastest_precision", "precision")
    print(json.dumps({k: result[k] for k in (*keys, "rtfx_sequential", "rtfx_batched", "wer_batched")}))


if __name__ == "__main__":
    main()
