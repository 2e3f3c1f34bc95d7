"""``asr-distill report RUN_DIR``: report.md with tables and plots for a run.

Read what the stages left in RUN_DIR (eval/summary.json, filter/filter_report.json and
calibration.json, Lightning's metrics.csv under train/, data_card.json) and write
RUN_DIR/report/report.md with PNG plots beside it. Missing inputs only drop their section.
"""

from __future__ import annotations

from . import add_force, subcommand

SUMMARY = "write RUN_DIR/report/report.md: model table, WER vs RTFx, label WER vs retention, training curves"


def add_parser(sub) -> None:
    """Add ``report`` to the CLI's subcommands."""
    p = subcommand(sub, "report", run, SUMMARY, __doc__)
    p.add_argument("run_dir", help="output root of `asr-distill run` (or a folder holding eval/summary.json)")
    add_force(p, "write into an existing RUN_DIR/report folder that holds files report did not write")


def run(args) -> int:
    """Write the report under RUN_DIR's lock; a missing run folder is a one-line error."""
    from pathlib import Path

    from ..outputs import guard_output
    from ..pipeline.layout import stage_seconds
    from ..report import REPORT_DIR, report_inputs, write_report

    out = Path(args.run_dir) / REPORT_DIR
    force = args.force and (out.is_dir() or not out.exists())
    try:
        if not Path(args.run_dir).is_dir():
            raise FileNotFoundError(f"{args.run_dir} is not a folder (give the output root of a run)")
        with guard_output(out, inputs=report_inputs(args.run_dir), kind="report_dir", force=force):
            path = write_report(args.run_dir, stage_seconds(args.run_dir))
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {path}")
    return 0
