"""``asr-distill manifest``: a NeMo manifest of every readable audio file under a folder."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("manifest", help="build a NeMo manifest from a folder of audio files",
                       description="Walk DIR (wav, flac, ogg; mp3/m4a where a decoder exists) and write "
                       "one NeMo line per readable file; unreadable files are listed with the reason.")
    p.add_argument("dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..manifest import write_folder_manifest

    root = Path(args.dir)
    if not root.is_dir():
        raise SystemExit(f"error: {root} is not a directory")
    out = Path(args.out)
    written, skipped = write_folder_manifest(root, out)
    print(f"wrote {len(written)} lines ({sum(u.duration for u in written) / 3600:.2f} h) to {out}")
    for skip in skipped:
        print(f"  skipped {skip.audio_filepath}: {skip.reason}")
    return 0
