"""``asr-distill export-labels``: labels out to a Hugging Face dataset, a lhotse CutSet or a Kaldi folder.

Reads LABELS (labels.jsonl from `asr-distill label` or kept.jsonl from `asr-distill filter`) and
writes the folder OUT: hf, a dataset saved with save_to_disk (the audio of each label embedded at 16
kHz, the label in `whisper_transcript` as Distil-Whisper reads it, the reference in `text`,
confidence and provenance columns); lhotse, cuts/recordings/supervisions manifests (segments of long
recordings keep their offsets); kaldi, a data directory (wav.scp, segments, text, utt2spk, spk2utt).
Needs the interop extra: pip install 'asr_distill[interop]'.
"""

from __future__ import annotations

from pathlib import Path

from . import add_force, add_out, subcommand

FORMATS = ("hf", "lhotse", "kaldi")  # interop.FORMATS, spelled out so that --help imports nothing


SUMMARY = "write labels as a Hugging Face dataset, a lhotse CutSet or a Kaldi data directory"


def add_parser(sub) -> None:
    """Add ``export-labels`` to the subcommands."""
    p = subcommand(sub, "export-labels", run, SUMMARY, __doc__)
    p.add_argument("labels", help="teacher labels or pseudo-labels (JSON Lines)")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help="what to write")
    add_out(p, "output folder (created; must not exist or be empty)")
    p.add_argument(
        "--teacher-labels",
        help="the teacher's labels.jsonl, to give pseudo-labels their no_speech_prob, compression_ratio "
        "and temperature",
    )
    add_force(p, "replace an earlier export in --out (a folder this toolkit did not write is never replaced)")


def run(args) -> int:
    """Export the labels; a bad input or a missing extra exits with a one-line error."""
    from ..interop import export_labels

    labels, out = Path(args.labels), Path(args.out)
    inputs = [p.resolve() for p in (labels, Path(args.teacher_labels or labels))]
    if any(p == out.resolve() or out.resolve() in p.parents for p in inputs):
        raise SystemExit(f"error: --out {out} holds the input; give another folder")
    try:
        n = export_labels(labels, args.fmt, out, teacher_labels=args.teacher_labels, overwrite=args.force)
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {n} labels as {args.fmt} -> {out}")
    return 0
