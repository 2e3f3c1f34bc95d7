"""``asr-distill report RUN_DIR``: report.md with tables and plots for a run."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report/report.md: model table, WER vs RTFx, label WER vs retention, "
        "training curves",
        description="Read what the stages left in RUN_DIR (eval/summary.json, filter/filter_report.json and "
        "calibration.json, Lightning's metrics.csv under train/, data_card.json) and write "
        "RUN_DIR/report/report.md with PNG plots beside it. Missing inputs only drop their section.",
    )
    p.add_argument("run_dir", help="output root of `asr-distill run` (or a folder holding eval/summary.json)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import write_report

    try:
        path = write_report(args.run_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {path}")
    return 0
