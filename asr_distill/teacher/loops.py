"""The repeated n-gram guard: a decoding that says the same words over and over is a loop.

Whisper's own guard is the compression ratio (``transcribe`` redoes an output whose gzip
ratio is over 2.4), which needs a long loop before it trips: "the order number is 4 4 4 4"
compresses no worse than plain speech. This guard counts what a loop is, an n-gram said
``LOOP_MIN_REPEATS`` times or more in a row, so decoding can redo it (30 s window, then the
temperature ladder) before it reaches a label or a WER. It reads the text only, so labeling
and evaluation judge every model's output alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Three copies of a word or digit are real speech in AN4 ("five five five", "l l l"); four
# almost never are. The same limit trims loops in quality.correct.
LOOP_MIN_REPEATS = 4
LOOP_MAX_NGRAM = 8
_EDGES = re.compile(r"^\W+|\W+$")


def _cores(words: Sequence[str]) -> list[str]:
    """Words lower-cased without surrounding punctuation, so "No, no, no, no." repeats."""
    return [_EDGES.sub("", w).lower() for w in words]


def repeated_ngram(
    words: Sequence[str], min_repeats: int = LOOP_MIN_REPEATS, max_ngram: int = LOOP_MAX_NGRAM
) -> tuple[int, int, int] | None:
    """The first run of an n-gram said ``min_repeats``+ times in a row: ``(start, n, copies)``, or None.

    For each n, word ``i`` equals word ``i + n`` along a run of ``(copies - 1) * n`` positions
    exactly when the n-gram at the run's start repeats ``copies`` times; one pass per n finds it.
    Runs of words that are only punctuation ("- - - -") do not count.
    """
    cores = _cores(words)
    best: tuple[int, int, int] | None = None
    for n in range(1, max_ngram + 1):
        run = 0
        for i in range(len(cores) - n):
            same = cores[i] == cores[i + n] and bool(cores[i])
            run = run + 1 if same else 0
            copies = run // n + 1
            start = i - run + 1
            if copies >= min_repeats and (best is None or start < best[0]):
                while start + (copies + 1) * n <= len(cores) and (
                    cores[start + copies * n : start + (copies + 1) * n] == cores[start : start + n]
                ):
                    copies += 1
                best = (start, n, copies)
                break
    return best


def loops(text: str, min_repeats: int = LOOP_MIN_REPEATS) -> bool:
    """Whether ``text`` holds an n-gram loop (see :func:`repeated_ngram`): decoding redoes it."""
    return repeated_ngram(text.split(), min_repeats) is not None


__all__ = ["LOOP_MAX_NGRAM", "LOOP_MIN_REPEATS", "loops", "repeated_ngram"]
