"""LibriSpeech folders -> NeMo manifests, and a miniature LibriSpeech tree for dry runs.

    python prepare_librispeech.py manifest LIBRISPEECH_DIR/train-clean-100 OUT.jsonl
    python prepare_librispeech.py mini SRC_MANIFEST.jsonl DEST_DIR [--speakers 2]

``manifest`` reads every ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` and writes one
line per utterance (absolute ``audio_filepath``, ``duration`` from the flac header, ``text``
in lower case, ``speaker``, ``id``). ``mini`` lays out the clips of any manifest as
a LibriSpeech subset (``DEST/<spk>/<chapter>/<spk>-<chapter>-NNNN.flac`` + ``trans.txt``),
so the recipe's dry run exercises the real reader on real audio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def read_subset(subset: Path):
    """Yield manifest lines for one LibriSpeech subset folder (e.g. train-clean-100)."""
    import soundfile as sf

    for trans in sorted(subset.glob("*/*/*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            audio = trans.parent / f"{utt}.flac"
            if not audio.is_file():
                print(f"warning: {audio} listed in {trans} but missing; left out", file=sys.stderr)
                continue
            # Lower case: LibriSpeech's capitals are a convention, and format_insensitive
            # reads an all-caps word of 2-10 letters as spelled letters ("NINE" -> "n i n e").
            yield {
                "audio_filepath": str(audio.resolve()),
                "duration": round(sf.info(audio).duration, 3),
                "text": text.strip().lower(),
                "speaker": utt.split("-")[0],
                "id": utt,
            }


def write_manifest(subset: Path, out: Path) -> int:
    if not subset.is_dir():
        raise SystemExit(
            f"error: {subset} is not a LibriSpeech subset folder (e.g. LibriSpeech/train-clean-100)"
        )
    lines = [json.dumps(d, ensure_ascii=False) for d in read_subset(subset)]
    if not lines:
        raise SystemExit(f"error: no */*/*.trans.txt under {subset}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    tmp.replace(out)
    return len(lines)


def make_mini(src: Path, dest: Path, speakers: int) -> int:
    """Copy a manifest's clips into LibriSpeech's layout, ``speakers`` pseudo-speakers."""
    rows = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
    by_chapter: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for i, d in enumerate(rows):
        audio = Path(d["audio_filepath"])
        audio = audio if audio.is_absolute() else src.parent / audio
        if audio.suffix != ".flac":
            raise SystemExit(f"error: {audio} is not flac; LibriSpeech trees hold flac files")
        spk, chapter = 100 + i % speakers, 1000
        utt = f"{spk}-{chapter}-{i:04d}"
        target = dest / str(spk) / str(chapter) / f"{utt}.flac"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, target)
        by_chapter.setdefault((spk, chapter), []).append((utt, d["text"].upper()))
    for (spk, chapter), utts in by_chapter.items():
        trans = dest / str(spk) / str(chapter) / f"{spk}-{chapter}.trans.txt"
        trans.write_text("".join(f"{u} {t}\n" for u, t in utts), encoding="utf-8")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("subset")
    m.add_argument("out")
    n = sub.add_parser("mini")
    n.add_argument("src")
    n.add_argument("dest")
    n.add_argument("--speakers", type=int, default=2)
    args = p.parse_args(argv)
    if args.cmd == "manifest":
        print(f"wrote {write_manifest(Path(args.subset), Path(args.out))} lines to {args.out}")
    else:
        print(f"copied {make_mini(Path(args.src), Path(args.dest), args.speakers)} clips into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
