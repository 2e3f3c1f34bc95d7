"""One module per CLI stage. Each defines ``add_parser(subparsers)`` and sets ``func``.

Modules here parse options, call the library and print; the library never imports them.
Heavy imports belong inside the command function, so ``asr-distill --help`` stays fast.
A command's ``--help`` description is its module docstring after the first line, so the
text a reader sees in the source and in the terminal is one text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def description(doc: str | None) -> str | None:
    """The paragraphs of a module docstring after its first line (argparse re-wraps them)."""
    parts = (doc or "").split("\n\n", 1)
    return parts[1].strip() if len(parts) == 2 else None


def subcommand(
    sub, name: str, func: Callable[[argparse.Namespace], int], summary: str, doc: str | None = None
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` whose parsed arguments go to ``func``; returns its parser.

    Args:
        sub: The subparsers action to add to.
        name: The subcommand as typed.
        func: Runs the command; set as the parsed arguments' ``func``.
        summary: One line for the parent's list of subcommands.
        doc: The command module's docstring, whose body becomes the description.
    """
    p = sub.add_parser(name, help=summary, description=description(doc))
    p.set_defaults(func=func)
    return p


def add_force(p: argparse.ArgumentParser, what: str) -> None:
    """``--force``: what the command may replace or write into when it did not write it."""
    p.add_argument("--force", action="store_true", help=what)


def add_out(p: argparse.ArgumentParser, what: str) -> None:
    """A required ``--out``: where the command writes."""
    p.add_argument("--out", required=True, help=what)
