"""Helpers for tests that drive ``asr-distill`` as a user would and check what it left behind."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

BIG_REFERENCE_BYTES = 50_000_000  # one manifest line this long must cost bounded time and memory

_HOLD = """
import sys, time
from asr_distill.outputs import guard_output
with guard_output(sys.argv[1], kind=sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def run_cli(*argv) -> tuple[int, str, str]:
    """``asr-distill ARGV`` in this process: (exit code, stdout, stderr)."""
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def label_command(manifest, out, *extra: str, model: str = "tiny.en") -> list[str]:
    """``asr-distill label MANIFEST --out OUT --model MODEL EXTRA...`` for a child process."""
    return [
        sys.executable,
        "-m",
        "asr_distill.cli",
        "label",
        str(manifest),
        "--out",
        str(out),
        "--model",
        model,
        *extra,
    ]


def snapshot(*roots) -> dict[Path, bytes]:
    """Every regular file at or under ``roots``, with its bytes (a new or changed file shows)."""
    files: dict[Path, bytes] = {}
    for root in map(Path, roots):
        if root.is_file() and not root.is_symlink():
            files[root] = root.read_bytes()
        elif root.is_dir():
            files.update({p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()})
    return files


@contextlib.contextmanager
def logged() -> Iterator[list[str]]:
    """The messages logged under ``asr_distill`` during the block."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("asr_distill")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def hold_output(out: Path, kind: str) -> subprocess.Popen:
    """Another process holding ``out``'s writer lock (its command line names a marker argument).

    The caller kills it; until then every writer on ``out`` must be refused.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out), kind, "--marker-arg"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def big_text(n_bytes: int) -> str:
    """A reference of ``n_bytes`` of plain words, too long to align at full cost."""
    return "word " * (n_bytes // 5)
