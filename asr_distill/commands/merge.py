"""``asr-distill merge``: join the shard files of a sharded ``label`` run."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="join the shard files of a sharded label run",
                       description="Join OUT.shardIIIII-of-NNNNN.jsonl files into OUT (and their skips), "
                       "dropping duplicate ids. Refuses when a shard is missing.")
    p.add_argument("out", help="the --out given to the sharded label runs")
    p.add_argument("--allow-missing", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..label import merge_shards

    try:
        n = merge_shards(args.out, allow_missing=args.allow_missing)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"merged {n} labels into {args.out}")
    return 0
