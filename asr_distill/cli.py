"""``asr-distill``: the command line. It parses options, calls the library, prints a summary.

Logging is configured here and nowhere in the library.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from pathlib import Path

log = logging.getLogger("asr_distill")


def _shard(text: str) -> tuple[int, int]:
    from .manifest import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_label(sub) -> None:
    p = sub.add_parser(
        "label",
        help="transcribe a manifest or an audio folder with the Whisper teacher (batched, resumable)",
        description="Pseudo-label audio with a Whisper teacher. Writes OUT (one TeacherLabel per line, "
        "NeMo-compatible) and OUT's .skips.jsonl (inputs that could not be used, with the reason). "
        "A rerun resumes: ids already in OUT are skipped.",
    )
    p.add_argument("input", help="NeMo JSON Lines manifest, or a folder of audio files")
    p.add_argument("--out", required=True, help="output JSON Lines file (e.g. labels.jsonl)")
    p.add_argument("--model", default="base",
                   help="packaged name (base, tiny.en), openai-whisper name, .pt checkpoint, or "
                        "CTranslate2 folder (default: base)")
    p.add_argument("--backend", choices=["whisper", "faster-whisper"], default="whisper")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--beam-size", type=int, default=None, help="beam search width (default: greedy)")
    p.add_argument("--language", default="en", help="language code, or 'auto' to detect per clip")
    p.add_argument("--full-context", action="store_true",
                   help="always pad to Whisper's 30 s window (slower on short clips)")
    # These choices mirror teacher.options.SHORT_WINDOWS_S and teacher.backends.PRECISIONS, written
    # out so that --help does not import torch.
    p.add_argument("--min-window", type=float, default=20.0, choices=[10.0, 15.0, 20.0, 30.0],
                   help="shortest encoder context for short clips, seconds (10: fastest; 15: a third faster "
                        "than 20 at nearly its WER; 20: default, writes letters and digits as the 30 s "
                        "context does)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="encoder dtype (auto: fp16 on CUDA, bf16 on CPUs with bf16 units, else fp32); "
                        "with faster-whisper, the compute type (auto: int8 on CPU)")
    p.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="label only lines with index %% N == I (0-based); output gets a shard suffix")
    p.add_argument("--workers", type=int, default=1,
                   help="processes labeling shards at once, merged into OUT (one per GPU; cores/N torch "
                        "threads each); resume with the same N")
    p.add_argument("--seed", type=int, default=0, help="seed for temperature-fallback sampling (per batch)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: CUDA when present); --workers: one GPU each")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_label)


def _resolve_input(path: Path, out: Path) -> Path:
    if path.is_dir():
        from .jsonl import atomic_write_jsonl
        from .manifest import build_manifest

        manifest = out.with_name(f"{out.stem}.input.jsonl")
        lines = [d for d in build_manifest(path) if "skip_reason" not in d]
        for d in lines:
            d["audio_filepath"] = str((path / d["audio_filepath"]).resolve())
        atomic_write_jsonl(manifest, lines)
        log.info("built %s from %s (%d audio files)", manifest, path, len(lines))
        return manifest
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist (give a manifest .jsonl or an audio folder)")
    return path


def _cmd_label(args) -> int:
    import torch

    from .label import label_to_file, shard_path, skips_path
    from .parallel import label_parallel, launched_by_torchrun
    from .teacher.options import LabelOptions

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    manifest = _resolve_input(Path(args.input), out)
    options = LabelOptions(
        beam_size=args.beam_size,
        language=None if args.language == "auto" else args.language,
        short_context=not args.full_context,
        min_window_s=args.min_window,
    )
    kw = dict(teacher=args.model, backend=args.backend, options=options, batch_size=args.batch_size,
              seed=args.seed, progress=not args.no_progress, precision=args.precision)
    if args.workers > 1 or launched_by_torchrun():
        if args.shard:
            raise SystemExit("error: --workers and --shard both split a job; use one")
        stats = label_parallel(manifest, out, workers=args.workers, threads=args.threads or None, **kw)
    else:
        stats = label_to_file(manifest, out, shard=args.shard, device=args.device, **kw)
    written = shard_path(out, args.shard) if args.shard else out
    print(f"labeled {stats.labeled} (already done {stats.already_done}), skipped {stats.skipped}, "
          f"{stats.audio_s / 60:.1f} min of audio at RTFx {stats.rtfx:.1f} -> {written}")
    _print_skip_reasons(skips_path(written))
    _print_label_wer(written)
    return 0


def _print_skip_reasons(path: Path) -> None:
    from .jsonl import read_jsonl

    if not path.exists():
        return
    reasons = collections.Counter(d["reason"] for d in read_jsonl(path))
    if reasons:
        print("skipped by reason: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + f" ({path})")


def _print_label_wer(path: Path) -> None:
    """When the manifest had transcripts, say how good the labels are against them."""
    from .jsonl import read_jsonl
    from .metrics import word_error_rate

    pairs = [(d["ref_text"], d["text"]) for d in read_jsonl(path) if d.get("ref_text") is not None]
    if pairs:
        r = word_error_rate([p[0] for p in pairs], [p[1] for p in pairs])
        print(f"label WER vs the manifest's transcripts: {r.wer:.2f}% over {r.utterances} utterances "
              f"({r.ref_words} words, normaliser {r.normaliser})")


def _add_manifest(sub) -> None:
    p = sub.add_parser("manifest", help="build a NeMo manifest from a folder of audio files",
                       description="Walk DIR (wav, flac, ogg; mp3/m4a where a decoder exists) and write "
                       "one NeMo line per readable file; unreadable files are listed with the reason.")
    p.add_argument("dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_manifest)


def _cmd_manifest(args) -> int:
    from .jsonl import atomic_write_jsonl
    from .manifest import build_manifest

    root = Path(args.dir)
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a directory")
    good, bad = [], []
    for d in build_manifest(root):
        (bad if "skip_reason" in d else good).append(d)
    out = Path(args.out)
    for d in good:
        d["audio_filepath"] = str((root / d["audio_filepath"]).resolve())
    n = atomic_write_jsonl(out, good)
    print(f"wrote {n} lines ({sum(d['duration'] for d in good) / 3600:.2f} h) to {out}")
    for d in bad:
        print(f"  skipped {d['audio_filepath']}: {d['skip_reason']}")
    return 0


def _add_merge(sub) -> None:
    p = sub.add_parser("merge", help="join the shard files of a sharded label run",
                       description="Join OUT.shardIIIII-of-NNNNN.jsonl files into OUT (and their skips), "
                       "dropping duplicate ids. Refuses when a shard is missing.")
    p.add_argument("out", help="the --out given to the sharded label runs")
    p.add_argument("--allow-missing", action="store_true")
    p.set_defaults(func=_cmd_merge)


def _cmd_merge(args) -> int:
    from .label import merge_shards

    try:
        n = merge_shards(args.out, allow_missing=args.allow_missing)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"merged {n} labels into {args.out}")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthesise customer-support speech with a known transcript (Piper TTS)",
                       description="Write N templated support-call utterances (product names, order "
                       "numbers, amounts, dates, addresses) as 16 kHz WAV with Piper's offline voice, and "
                       "their manifest OUT/manifest.jsonl. Existing files are kept (resumable).")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args) -> int:
    from .synth import write_corpus

    manifest = write_corpus(args.out, args.n, seed=args.seed)
    print(f"wrote {args.n} utterances and {manifest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-distill",
        description="Pseudo-label speech with a Whisper teacher, filter, train a student, measure WER.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    _add_synth(sub)
    _add_manifest(sub)
    _add_label(sub)
    _add_merge(sub)
    _add_stage_commands(sub)
    return parser


def _add_stage_commands(sub) -> None:
    """Each module in ``asr_distill.commands`` adds its stage's subcommand (``add_parser(sub)``).

    A stage whose module cannot be imported (say, an optional dependency is missing) still
    appears, and says why when run, instead of taking every other stage down with it.
    """
    import importlib
    import pkgutil

    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))
    for name in names:
        try:
            importlib.import_module(f"{commands.__name__}.{name}").add_parser(sub)
        except ImportError as e:
            p = sub.add_parser(name.replace("_", "-"), help=f"(unavailable: {e})")
            p.set_defaults(func=lambda args, e=e: _unavailable(e))


def _unavailable(error: ImportError) -> int:
    print(f"error: this stage cannot run here: {error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from .jsonl import OutputLockedError, OutputNotWritableError
    from .teacher import TeacherNotFoundError

    try:
        return args.func(args)
    except (OutputLockedError, OutputNotWritableError, TeacherNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
