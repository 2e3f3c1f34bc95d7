"""Copy a NeMo manifest with absolute audio paths, optionally only some of its lines.

Recipes use it to make their output root self-contained (``OUT/data/*.jsonl`` point at
the audio wherever it lives) and to build small configurations from big sets:

    python recipes/tools/manifest_subset.py SRC.jsonl OUT.jsonl [--first N | --every K]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("out")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--first", type=int, default=None, help="keep the first N lines")
    g.add_argument("--every", type=int, default=None, help="keep every K-th line (a spread-out subset)")
    args = p.parse_args(argv)
    src = Path(args.src).resolve()
    if not src.is_file():
        print(f"error: manifest {src} does not exist", file=sys.stderr)
        return 2
    lines = []
    for n, raw in enumerate(src.read_text(encoding="utf-8").splitlines()):
        if not raw.strip():
            continue
        if args.every and n % args.every:
            continue
        d = json.loads(raw)
        audio = Path(d["audio_filepath"])
        d["audio_filepath"] = str(audio if audio.is_absolute() else (src.parent / audio).resolve())
        lines.append(json.dumps(d, ensure_ascii=False))
        if args.first is not None and len(lines) >= args.first:
            break
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {len(lines)} lines to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
