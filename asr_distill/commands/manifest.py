"""``asr-distill manifest``: a NeMo manifest of every readable audio file under a folder.

Walk DIR (wav, flac, ogg; mp3/m4a where a decoder exists) and write one NeMo line per readable file;
unreadable files are listed with the reason.
"""

from __future__ import annotations

from . import add_force, subcommand

SUMMARY = "build a NeMo manifest from a folder of audio files"


def add_parser(sub) -> None:
    """Add ``manifest`` to the CLI's subcommands."""
    p = subcommand(sub, "manifest", run, SUMMARY, __doc__)
    p.add_argument("dir")
    p.add_argument("--out", required=True)
    add_force(p, "replace an existing --out that is not a manifest (never a link or a folder)")


def run(args) -> int:
    """Check ``--out`` (nothing is written to a file that is not a manifest), then write it."""
    from pathlib import Path

    from ..manifest import write_folder_manifest
    from ..outputs import check_output

    root = Path(args.dir)
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a directory")
    out = check_output(args.out, kind="manifest", force=args.force)
    written, skipped = write_folder_manifest(root, out)
    print(f"wrote {len(written)} lines ({sum(u.duration for u in written) / 3600:.2f} h) to {out}")
    for skip in skipped:
        print(f"  skipped {skip.audio_filepath}: {skip.reason}")
    return 0
