"""``asr-distill label``: pseudo-label a manifest or an audio folder with the Whisper teacher.

Pseudo-label audio with a Whisper teacher. Writes OUT (one TeacherLabel per line, NeMo-compatible)
and OUT's .skips.jsonl (inputs that could not be used, with the reason). A rerun resumes: ids
already in OUT are skipped. With --pack-s, the shared windows' audio and labels are kept in
OUT's .windows/ folder (delete it once OUT is complete).
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from pathlib import Path

from ..audio import MAX_SEGMENT_S, SEGMENT_S_RANGE, SEGMENTERS
from ..teacher.options import (
    AUTO_BATCH,
    BACKENDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BEST_OF,
    DEFAULT_MIN_WINDOW_S,
    DEFAULT_SEED,
    DEFAULT_TEACHER,
    ENGINES,
    PRECISIONS,
    SHORT_WINDOWS_S,
    parse_batch_size,
)
from . import add_force, add_out, subcommand

log = logging.getLogger("asr_distill")


def _shard(text: str) -> tuple[int, int]:
    from ..manifest import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


SUMMARY = "transcribe a manifest or an audio folder with the Whisper teacher (batched, resumable)"


def add_parser(sub) -> None:
    """Add ``label`` to the CLI's subcommands."""
    p = subcommand(sub, "label", run, SUMMARY, __doc__)
    p.add_argument("input", help="NeMo JSON Lines manifest, or a folder of audio files")
    add_out(p, "output JSON Lines file (e.g. labels.jsonl)")
    p.add_argument(
        "--model",
        default=DEFAULT_TEACHER,
        help="packaged name (base, tiny.en), openai-whisper name, .pt checkpoint, or "
        f"CTranslate2 folder (default: {DEFAULT_TEACHER})",
    )
    p.add_argument("--backend", choices=BACKENDS, default="whisper")
    p.add_argument(
        "--batch-size",
        type=parse_batch_size,
        default=AUTO_BATCH,
        help=f"clips per batch, or auto: {DEFAULT_BATCH_SIZE} on a CPU, as many as the free memory "
        "holds on a GPU (default: auto)",
    )
    _add_decoding_options(p)
    p.add_argument(
        "--segmenter",
        choices=SEGMENTERS,
        default="energy",
        help="how long recordings are cut: energy (at the quietest pauses, no extra dependency) or "
        "silero (Silero VAD speech regions merged into segments at the longest pauses; the vad extra)",
    )
    p.add_argument(
        "--segment-s",
        type=float,
        default=MAX_SEGMENT_S,
        help=f"longest segment a recording is cut into, {SEGMENT_S_RANGE[0]:g}-{SEGMENT_S_RANGE[1]:g} s "
        "(default %(default)g: Whisper's window; shorter keeps unrelated utterances apart at the cost "
        "of more encoder windows)",
    )
    p.add_argument(
        "--cut-pause-s",
        type=float,
        default=None,
        help="silero only: a pause at least this long always ends a segment, so unrelated utterances "
        "are not decoded in one window, and keeps 0.5 s of it beside the speech, the rest left out as "
        "no_speech (default 0.5; inf packs speech up to --segment-s)",
    )
    p.add_argument(
        "--pack-s",
        type=float,
        default=None,
        metavar="S",
        help="decode each speaker's consecutive short utterances together in windows of up to S s "
        "(at most 30) and split the label back per utterance by word timings: much better labels "
        "for short read or accented utterances (one process; windows kept in OUT's .windows folder)",
    )
    _add_speed_options(p)
    _add_job_options(p)


def _add_decoding_options(p) -> None:
    """How the teacher searches: beam, sampling, language, word timings."""
    p.add_argument("--beam-size", type=int, default=None, help="beam search width (default: greedy)")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=None,
        metavar="T",
        help="sample at T instead of greedy decoding, e.g. the teacher at a temperature as a second "
        "opinion for the filter's consensus (one value: no fallback; several: the fallback ladder; "
        "default: greedy, then transcribe's ladder 0.2-1.0 where a check fails)",
    )
    p.add_argument(
        "--best-of",
        type=int,
        default=DEFAULT_BEST_OF,
        help="candidates sampled at each temperature, the likeliest kept (1: a plain sample; "
        "default %(default)s)",
    )
    p.add_argument("--language", default="en", help="language code, or 'auto' to detect per clip")
    p.add_argument(
        "--word-timestamps",
        action="store_true",
        help="add each word's start, end and probability to the label (one more decoder pass)",
    )


def _add_speed_options(p) -> None:
    """The encoder-window and precision options: what trades labeling speed against WER."""
    p.add_argument(
        "--full-context",
        action="store_true",
        help="always pad to Whisper's 30 s window (slower on short clips)",
    )
    p.add_argument(
        "--min-window",
        type=float,
        default=DEFAULT_MIN_WINDOW_S,
        choices=SHORT_WINDOWS_S,
        help="shortest encoder context for short clips, seconds (10: fastest; 15: a third faster "
        "than 20 at nearly its WER; 20: default, writes letters and digits as the 30 s "
        "context does)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="encoder dtype (auto: the fastest of fp32 and bf16/fp16 that agrees with fp32, timed once on "
        "this machine and cached; see asr-distill doctor); "
        "with faster-whisper, the compute type (auto: int8 on CPU)",
    )


def _add_job_options(p) -> None:
    """How the run is split, seeded, placed and written."""
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="label only lines with index %% N == I (0-based); output gets a shard suffix",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes labeling shards at once, merged into OUT (one per GPU; cores/N torch "
        "threads each); resume with the same N",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed for sampling (--temperature and fallback; per batch)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda or cuda:N (default: CUDA when present); --workers: one GPU each",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this machine's processes (--workers, torchrun, SLURM arrays); ray: a Ray Data "
        "job with the teacher in actors (--workers of them; the ray extra)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: the cluster to join (ray.init(address=...); default: a local Ray)",
    )
    p.add_argument("--no-progress", action="store_true")
    add_force(p, "replace an existing OUT (or its .skips file) that this toolkit did not write")


def _resolve_input(path: Path, out: Path, written: Path, force: bool) -> Path:
    """A manifest as given, or one written next to ``out`` for a folder of audio.

    The label files (``written``: ``out`` or its shard) and the folder's manifest are checked
    before anything is written, so a refused output leaves no trace.
    """
    from ..interop.inputs import detect_input
    from ..label import check_output_files
    from ..outputs import check_output

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (give a manifest .jsonl or an audio folder)")
    check_output_files(written, [path], force=force)
    if not path.is_dir() or detect_input(path):
        return path
    from ..manifest import write_folder_manifest

    manifest = out.with_name(f"{out.stem}.input.jsonl")
    check_output(manifest, inputs=[written], kind="manifest", force=force)
    found, _ = write_folder_manifest(path, manifest)
    log.info("built %s from %s (%d audio files)", manifest, path, len(found))
    return manifest


def _options(args):
    from ..teacher.options import LabelOptions

    return LabelOptions.from_flags(
        beam_size=args.beam_size,
        language=args.language,
        min_window=args.min_window,
        full_context=args.full_context,
        word_timestamps=args.word_timestamps,
        temperature=args.temperature,
        best_of=args.best_of,
    )


def run(args) -> int:
    """Label (refusing unsafe outputs before anything is written), then summarise the run."""
    from ..label import LabelRun, shard_path, skips_path
    from ..label_job import Placement, label_job
    from ..parallel import launched_by_torchrun

    out = Path(args.out)
    if (args.workers > 1 or launched_by_torchrun()) and args.shard:
        raise SystemExit("error: --workers and --shard both split a job; use one")
    written = shard_path(out, args.shard) if args.shard else out
    try:
        manifest = _resolve_input(Path(args.input), out, written, args.force)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = LabelRun(
        teacher=args.model,
        backend=args.backend,
        options=_options(args),
        batch_size=args.batch_size,
        shard=args.shard,
        seed=args.seed,
        progress=not args.no_progress,
        device=args.device,
        precision=args.precision,
        segmenter=args.segmenter,
        segment_s=args.segment_s,
        cut_pause_s=args.cut_pause_s,
    )
    where = Placement(args.engine, args.workers, args.threads, args.ray_address)
    stats = label_job(manifest, out, run, where, pack_s=args.pack_s, force=args.force)
    print(
        f"labeled {stats.labeled} (already done {stats.already_done}), skipped {stats.skipped}, "
        f"{stats.audio_s / 60:.1f} min of audio at RTFx {stats.rtfx:.1f} -> {written}"
    )
    _print_skip_reasons(skips_path(written))
    _print_label_wer(written)
    return 0


def _print_skip_reasons(path: Path) -> None:
    from ..jsonl import read_jsonl

    if not path.exists():
        return
    reasons = collections.Counter(d["reason"] for d in read_jsonl(path))
    if reasons:
        print("skipped by reason: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + f" ({path})")


def _print_label_wer(path: Path) -> None:
    """When the manifest had transcripts, say how good the labels are against them.

    Bounded: a label whose reference is too long to align is left out with a warning
    (``quality.filter_report.label_wer``), so one absurd manifest line cannot stall the end
    of a finished run.
    """
    from types import SimpleNamespace

    from ..jsonl import read_jsonl
    from ..metrics import DEFAULT_NORMALISER
    from ..quality.filter_report import label_wer

    labels = (
        SimpleNamespace(id=d.get("id"), text=str(d.get("text") or ""), ref_text=d["ref_text"])
        for d in read_jsonl(path)
        if d.get("ref_text") is not None
    )
    r = label_wer(labels, normaliser=DEFAULT_NORMALISER)
    if r is not None:
        print(
            f"label WER vs the manifest's transcripts: {r.wer:.2f}% over {r.utterances} utterances "
            f"({r.ref_words} words, normaliser {r.normaliser})"
        )
