"""``asr-distill``: the command line. It builds the parser and hands each stage to its module.

Each subcommand lives in ``asr_distill.commands.<name>`` (``add_parser`` and ``run``), a
thin call into the library. Logging is configured here and nowhere in the library.
Nothing here imports torch or whisper, so ``asr-distill --help`` and ``asr-distill SUB
--help`` answer at once (``train --help`` is LightningCLI's own and loads the model classes).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import commands

# Subcommands in the order the pipeline runs them; a new module in ``commands`` comes after.
ORDER = (
    "synth",
    "manifest",
    "adapt_window",
    "label",
    "merge",
    "filter",
    "review",
    "train",
    "export",
    "export_labels",
    "evaluate",
    "report",
    "run",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``asr-distill`` parser, one subcommand per stage in pipeline order."""
    parser = argparse.ArgumentParser(
        prog="asr-distill",
        description="Pseudo-label speech with a Whisper teacher, filter, train a student, measure WER.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    _add_stage_commands(sub)
    return parser


def _add_stage_commands(sub) -> None:
    """Each module in ``asr_distill.commands`` adds its stage's subcommand (``add_parser(sub)``).

    A stage whose module cannot be imported (say, an optional dependency is missing) still
    appears, and says why when run, instead of taking every other stage down with it.
    """
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        try:
            importlib.import_module(f"{commands.__name__}.{name}").add_parser(sub)
        except ImportError as e:
            p = sub.add_parser(name.replace("_", "-"), help=f"(unavailable: {e})")
            p.set_defaults(func=lambda args, e=e: _unavailable(e))


def _unavailable(error: ImportError) -> int:
    print(f"error: this stage cannot run here: {error}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; logging is set up here, never in the library."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from .jsonl import OutputLockedError, OutputNotWritableError
    from .teacher.errors import TeacherNotFoundError

    try:
        return args.func(args)
    except (OutputLockedError, OutputNotWritableError, TeacherNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
