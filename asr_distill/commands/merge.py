"""``asr-distill merge``: join the shard files of a sharded ``label`` run.

Join OUT.shardIIIII-of-NNNNN.jsonl files into OUT (and their skips), dropping duplicate ids. Refuses
when a shard is missing or still being written.
"""

from __future__ import annotations

import sys

from . import add_force, subcommand

SUMMARY = "join the shard files of a sharded label run"


def add_parser(sub) -> None:
    """Add ``merge`` to the CLI's subcommands."""
    p = subcommand(sub, "merge", run, SUMMARY, __doc__)
    p.add_argument("out", help="the --out given to the sharded label runs")
    p.add_argument("--allow-missing", action="store_true")
    add_force(p, "replace an existing OUT (or its .skips file) that this toolkit did not write")


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
