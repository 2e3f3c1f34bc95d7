"""``asr-distill run CONFIG.yaml``: label -> filter -> review -> train -> export -> evaluate -> report.

Chain the stages under one output root. Each stage writes ROOT/<stage>/.done when its outputs are
complete; a rerun skips those stages, and a stage that runs again makes every later stage run again.
Relative paths in CONFIG are read against CONFIG's folder; {out} is the root.
"""

from __future__ import annotations

from . import add_force, subcommand

SUMMARY = "run the whole pipeline from one YAML config (resumable: finished stages are skipped)"


def add_parser(sub) -> None:
    """Add ``run`` to the CLI's subcommands."""
    from ..pipeline.layout import STAGES

    p = subcommand(sub, "run", run, SUMMARY, __doc__)
    p.add_argument("config", help="pipeline YAML (see recipes/*/config*.yaml)")
    p.add_argument("--out", default=None, help="output root (overrides the config's out)")
    p.add_argument("--from", dest="start", choices=STAGES, default=None, help="first stage to run")
    p.add_argument("--to", dest="stop", choices=STAGES, default=None, help="last stage to run")
    add_force(
        p,
        "rerun the selected stages from scratch, even if done (training starts over); "
        "also write into an existing output root that holds files a run did not write",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only check the config and that the files and models it names are there, "
        "print it resolved and say what each stage would do (exit 2 on a problem)",
    )


def run(args) -> int:
    """Run (or with ``--check`` only plan) the pipeline; a bad config exits 2, as argparse does."""
    import dataclasses
    import json
    import sys

    from ..jsonl import OutputLockedError, OutputNotWritableError
    from ..pipeline import ConfigError, load_config, plan
    from ..pipeline import run as run_pipeline
    from ..pipeline.runner import check

    try:
        cfg = load_config(args.config, out=args.out)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2  # a usage error, as argparse's own
    if args.check:
        print(json.dumps(dataclasses.asdict(cfg), indent=1))
        stages = plan(cfg)
        for stage, why in stages:
            print(f"  {stage:9s} {why}")
        try:
            check(cfg, [stage for stage, why in stages if why not in ("done", "disabled")])
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        result = run_pipeline(cfg, start=args.start, stop=args.stop, force=args.force)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OutputLockedError, OutputNotWritableError):
        raise  # the CLI prints these and exits with 2
    except (RuntimeError, FileNotFoundError) as e:
        raise SystemExit(
            f"error: {e}\n(finished stages keep their .done markers: fix this and rerun "
            "the same command to resume)"
        ) from None
    for s in result.stages:
        print(f"  {s.name:9s} {s.status}" + (f" ({s.seconds:.0f} s)" if s.status == "ran" else ""))
    if result.table:
        print()
        print(result.table.strip())
    if result.report:
        print(f"\nreport: {result.report}")
    return 0
