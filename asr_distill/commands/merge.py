"""``asr-distill merge``: join the shard files of a sharded ``label`` run."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    """Add ``merge`` to the CLI's subcommands."""
    p = sub.add_parser("merge", help="join the shard files of a sharded label run",
                       description="Join OUT.shardIIIII-of-NNNNN.jsonl files into OUT (and their skips), "
                       "dropping duplicate ids. Refuses when a shard is missing or still being written.")
    p.add_argument("out", help="the --out given to the sharded label runs")
    p.add_argument("--allow-missing", action="store_true")
    p.add_argument("--force", action="store_true",
                   help="replace an existing OUT (or its .skips file) that this toolkit did not write")
    p.set_defaults(func=run)


def run(args) -> int:
    """Merge under OUT's lock; a missing, unfinished or foreign shard is one line and exit 2."""
    from ..label import merge_to_file

    try:
        n = merge_to_file(args.out, allow_missing=args.allow_missing, force=args.force)
    except FileNotFoundError as e:  # the rest (ValueError, locks) the CLI reports as one line too
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {n} labels into {args.out}")
    return 0
