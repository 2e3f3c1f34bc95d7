"""The review queue: which words of a label are doubtful, what hearing them costs, and the order to review in.

A written word of a label is *doubtful* when the consensus confidence of one of its spoken
words (``PseudoLabel.word_confidence``, one per ``format_insensitive`` word of the teacher's
text) is below :data:`~asr_distill.quality.consensus.DOUBTFUL_CONFIDENCE`. Reading that
confidence as the chance the word is right, a doubtful word carries ``1 - confidence``
*expected errors*, and a reviewer who checks it fixes that many on average.

Listening is what a review costs, so the queue ranks labels by expected errors fixed per
second of audio played: with word timings (``PseudoLabel.words``) a reviewer hears each
run of doubtful words padded by :data:`PAD` (more after it than before); without them, the
whole clip.
Labels without word confidences follow, least confident first (the whole-utterance order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..records import PseudoLabel, WordTiming
from .consensus import DOUBTFUL_CONFIDENCE, spoken_words


class Pad(NamedTuple):
    """Seconds played before and after a doubtful run (the pad of a span the page plays)."""

    before: float
    after: float

    @classmethod
    def parse(cls, text: str) -> Pad:
        """``"0.3"`` (both sides) or ``"0:0.3"`` (before:after); a ValueError names the bad text."""
        parts = text.split(":")
        try:
            values = [float(x) for x in parts]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"a pad is SECONDS or BEFORE:AFTER seconds, >= 0; got {text!r}")
        return cls(values[0], values[-1])

    def __str__(self) -> str:
        return f"{self.before:g}" if self.before == self.after else f"{self.before:g}:{self.after:g}"


# Enough to hear the whole word although Whisper's word timing is off, and no more: every
# second of pad is listening time. benchmarks/word_boundaries.py (Piper speech with known word
# boundaries) finds Whisper's word spans start early (99% of starts) and end early (median
# 0.06 s, 99th percentile 0.27 s): 0.05 s before a run and 0.3 s after it play 99.5% of words
# whole, as 0.3 s either side did (99.6%), for 0.25 s less per run.
PAD = Pad(0.05, 0.3)
# "word": doubtful words, ranked by expected errors fixed per second of listening;
# "utterance": whole clips, least confident first (review before word confidences existed).
UNITS = ("word", "utterance")


@dataclass(frozen=True)
class LabelWord:
    """One written word of a label's ``text``, as the review page shows it.

    Attributes:
        text: the written word.
        confidence: the lowest confidence of its spoken words (None: unknown).
        expected_errors: ``1 - confidence`` summed over its doubtful spoken words.
        start: seconds from the clip's start where it begins (None: no timing).
        end: where it ends (None: no timing).
        doubtful: whether the page highlights it.
    """

    text: str
    confidence: float | None
    expected_errors: float
    start: float | None
    end: float | None
    doubtful: bool


@dataclass(frozen=True)
class QueueEntry:
    """A label in the review queue with what reviewing it asks and promises.

    Attributes:
        label: the pseudo-label.
        words: its written words.
        runs: ``(first, last)`` word indices of each run of doubtful words.
        listen: ``(start, end)`` seconds from the clip's start played to the reviewer.
        expected_errors: expected errors the reviewer fixes (NaN without word confidences).
    """

    label: PseudoLabel
    words: tuple[LabelWord, ...]
    runs: tuple[tuple[int, int], ...]
    listen: tuple[tuple[float, float], ...]
    expected_errors: float

    @property
    def listen_s(self) -> float:
        """Seconds of audio the reviewer hears."""
        return sum(b - a for a, b in self.listen)

    @property
    def rate(self) -> float:
        """Expected errors fixed per second of listening (0 where nothing is expected)."""
        ok = self.listen_s > 0 and math.isfinite(self.expected_errors)
        return self.expected_errors / self.listen_s if ok else 0.0


def index_map(src: Sequence[str], dst: Sequence[str]) -> list[int | None]:
    """For each word of ``dst``, the index of the ``src`` word aligned to it (None: an inserted word)."""
    if list(src) == list(dst):
        return list(range(len(dst)))
    from rapidfuzz.distance import Levenshtein  # installed with jiwer

    out: list[int | None] = [None] * len(dst)
    for op in Levenshtein.opcodes(list(src), list(dst)):
        for k in range(min(op.src_end - op.src_start, op.dest_end - op.dest_start)):
            out[op.dest_start + k] = op.src_start + k
    return out


def written_owners(text: str, timings: Sequence[WordTiming]) -> list[list[WordTiming]] | None:
    """The word timings under each written word of ``text`` (None: they spell other characters).

    Timings and words are matched character by character (spaces ignored), so a timing
    holding "GMEF." or two timings splitting one written word both map.
    """
    written = text.split()
    if not timings or "".join("".join(t.word.split()) for t in timings) != "".join(written):
        return None
    owner = [i for i, t in enumerate(timings) for ch in t.word if not ch.isspace()]
    out, pos = [], 0
    for w in written:
        out.append([timings[i] for i in sorted(set(owner[pos : pos + len(w)]))])
        pos += len(w)
    return out


def written_timings(text: str, timings: Sequence[WordTiming]) -> list[tuple[float, float] | None]:
    """``(start, end)`` of each written word of ``text`` from word timings of the same decoding.

    When the timings spell other characters, every word is None (play the whole clip
    rather than a wrong span).
    """
    owners = written_owners(text, timings)
    if owners is None:
        return [None] * len(text.split())
    return [(min(t.start for t in mine), max(t.end for t in mine)) for mine in owners]


def _carried(p: PseudoLabel, t_spoken: Sequence[str], sources: Sequence[int | None]) -> list[float | None]:
    """The teacher-word confidence each spoken word of the label carries (None: unknown or added)."""
    conf = p.word_confidence if len(p.word_confidence) == len(t_spoken) else (None,) * len(t_spoken)
    return [None if t is None else conf[t] for t in sources]


def spoken_confidences(p: PseudoLabel) -> tuple[tuple[str, ...], list[float | None]]:
    """The spoken words of ``p.text`` and the confidence of each, carried over a correction.

    Confidences belong to the teacher's words; a correction's words are aligned to them
    (:func:`index_map`), and a word the correction added has none.
    """
    t_spoken = spoken_words(p.teacher_text)[0]
    x_spoken = t_spoken if p.text == p.teacher_text else spoken_words(p.text)[0]
    return x_spoken, _carried(p, t_spoken, index_map(t_spoken, x_spoken))


def label_words(p: PseudoLabel, threshold: float = DOUBTFUL_CONFIDENCE) -> tuple[LabelWord, ...]:
    """The written words of ``p.text`` with the confidence and timing of the teacher's words under them.

    Confidences belong to the teacher's text; where a correction changed the text, its
    spoken words are aligned to the teacher's, and a word the correction added has none.
    """
    t_spoken, t_spans = spoken_words(p.teacher_text)
    t_time = written_timings(p.teacher_text, p.words)
    x_spoken, x_spans = (t_spoken, t_spans) if p.text == p.teacher_text else spoken_words(p.text)
    sources = index_map(t_spoken, x_spoken)
    written = p.text.split()
    confs: list[list[float | None]] = [[] for _ in written]
    times: list[list[tuple[float, float] | None]] = [[] for _ in written]
    for (a, b), t, c in zip(x_spans, sources, _carried(p, t_spoken, sources), strict=True):
        spans = [None] if t is None else t_time[t_spans[t][0] : t_spans[t][1] + 1]
        for k in range(a, min(b, len(written) - 1) + 1):
            confs[k].append(c)
            times[k].extend(spans)
    return tuple(_word(w, c, s, threshold) for w, c, s in zip(written, confs, times, strict=True))


def _word(text: str, confs: list[float | None], times: list, threshold: float) -> LabelWord:
    known = [c for c in confs if c is not None]
    doubtful = [c for c in known if c < threshold]
    whole = bool(times) and all(s is not None for s in times)
    return LabelWord(
        text,
        min(known) if known else None,
        sum(1.0 - c for c in doubtful),
        min(s[0] for s in times) if whole else None,
        max(s[1] for s in times) if whole else None,
        bool(doubtful),
    )


def doubtful_runs(words: Sequence[LabelWord]) -> tuple[tuple[int, int], ...]:
    """``(first, last)`` indices of each run of adjacent doubtful words."""
    runs: list[tuple[int, int]] = []
    for i, w in enumerate(words):
        if not w.doubtful:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return tuple(runs)


def run_interval(
    words: Sequence[LabelWord], run: tuple[int, int], duration: float, pad: Pad = PAD
) -> tuple[float, float] | None:
    """The padded stretch of the clip that holds ``run`` (None: a word of it has no timing)."""
    span = words[run[0] : run[1] + 1]
    if any(w.start is None for w in span):
        return None
    start, end = min(w.start for w in span), max(w.end for w in span)
    return max(0.0, start - pad.before), min(duration, end + pad.after)


def listening(
    words: Sequence[LabelWord], runs: Sequence[tuple[int, int]], duration: float, pad: Pad = PAD
) -> tuple[tuple[float, float], ...]:
    """What a reviewer of ``runs`` hears: padded runs merged, or the whole clip when a run has no timing."""
    spans = [run_interval(words, r, duration, pad) for r in runs]
    if not spans or any(s is None for s in spans):
        return ((0.0, duration),)
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return tuple(merged)


def queue_entry(
    p: PseudoLabel, unit: str = "word", threshold: float = DOUBTFUL_CONFIDENCE, pad: Pad = PAD
) -> QueueEntry:
    """One label as the queue holds it: the words highlighted and what reviewing them costs.

    Raises:
        ValueError: ``unit`` is not one of :data:`UNITS`.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    words = label_words(p, threshold)
    runs = doubtful_runs(words)
    known = any(w.confidence is not None for w in words)
    if unit == "utterance":
        expected = sum(1.0 - w.confidence for w in words if w.confidence is not None)
        return QueueEntry(p, words, runs, ((0.0, p.duration),), expected if known else math.nan)
    expected = sum(w.expected_errors for w in words)
    return QueueEntry(
        p, words, runs, listening(words, runs, p.duration, pad), expected if known else math.nan
    )


def _score_key(p: PseudoLabel) -> float:
    return -math.inf if p.score is None else p.score


def _word_order(e: QueueEntry) -> tuple:
    """Doubtful labels by rate, then those without word confidences, then the rest; ties: least confident."""
    group = 0 if e.expected_errors > 0 else 1 if math.isnan(e.expected_errors) else 2
    return group, -e.rate, _score_key(e.label)


def review_queue(
    labels: Sequence[PseudoLabel],
    unit: str = "word",
    threshold: float = DOUBTFUL_CONFIDENCE,
    pad: Pad = PAD,
) -> list[QueueEntry]:
    """Every label in the order to review it: the most expected errors fixed per second heard first.

    ``unit="utterance"`` is the whole-utterance order: least confident first.
    """
    entries = [queue_entry(p, unit, threshold, pad) for p in labels]
    if unit == "utterance":
        return sorted(entries, key=lambda e: _score_key(e.label))
    return sorted(entries, key=_word_order)


__all__ = [
    "Pad",
    "PAD",
    "UNITS",
    "LabelWord",
    "QueueEntry",
    "doubtful_runs",
    "index_map",
    "label_words",
    "listening",
    "queue_entry",
    "review_queue",
    "run_interval",
    "spoken_confidences",
    "written_owners",
    "written_timings",
]
