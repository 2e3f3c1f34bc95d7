"""Per-utterance error counts and the corpus, per-speaker and per-duration WERs built from them.

Every figure is a sum of the counts of :func:`score_utterances`, so the tables agree with
each other and with :func:`asr_distill.metrics.word_error_rate`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..metrics import DEFAULT_NORMALISER, PERCENT, word_error_rate
from ..normalise import get_normaliser
from ..records import GroupWer, UtteranceScore, WerResult

# Upper edges (seconds) of the duration buckets; the last bucket is open-ended. Short
# clips are where Whisper's 30 s padding hurts speed and where students loop, so the
# low end is split finely.
DURATION_EDGES_S: tuple[float, ...] = (2.0, 4.0, 8.0, 15.0, 30.0)
UNKNOWN_SPEAKER = "unknown"
# An utterance longer than this is not scored: normalising and aligning a 50 MB reference takes
# minutes and gigabytes. An hour of speech is about 9,000 words; 20 characters a word is generous.
MAX_SCORED_WORDS = 10_000
MAX_SCORED_CHARS = 20 * MAX_SCORED_WORDS


def too_long_to_score(text: str) -> bool:
    """More than ``MAX_SCORED_WORDS`` words or ``MAX_SCORED_CHARS`` characters, counted at bounded cost."""
    return len(text) > MAX_SCORED_CHARS or len(text.split(maxsplit=MAX_SCORED_WORDS)) > MAX_SCORED_WORDS


def score_utterances(
    refs: Sequence[str],
    hyps: Sequence[str],
    normaliser: str = DEFAULT_NORMALISER,
    *,
    ids: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    speakers: Sequence[str | None] | None = None,
) -> list[UtteranceScore]:
    """Align and count errors utterance by utterance, after normalising both sides.

    An utterance whose normalised reference is empty scores every hypothesis word as
    an insertion, as :func:`asr_distill.metrics.word_error_rate` does, so sums of these
    counts reproduce its corpus figures exactly.

    Raises:
        ValueError: if the sequences differ in length or the normaliser is unknown.
    """
    n = len(refs)
    for name, seq in (("hyps", hyps), ("ids", ids), ("durations", durations), ("speakers", speakers)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{n} references but {len(seq)} {name}; they must pair up")
    norm = get_normaliser(normaliser)
    ids = ids if ids is not None else [str(i) for i in range(n)]
    r_norm = [norm(r) for r in refs]
    h_norm = [norm(h) for h in hyps]
    aligned = _align(r_norm, h_norm)
    scores = []
    for i in range(n):
        if i in aligned:
            s, d, ins, chunks = aligned[i]
        else:
            words = h_norm[i].split()
            s, d, ins = 0, 0, len(words)
            chunks = (("insert", "", " ".join(words)),) if words else ()
        scores.append(
            UtteranceScore(
                id=str(ids[i]),
                ref=refs[i],
                hyp=hyps[i],
                ref_norm=r_norm[i],
                hyp_norm=h_norm[i],
                substitutions=s,
                deletions=d,
                insertions=ins,
                ref_words=len(r_norm[i].split()),
                duration=float(durations[i]) if durations is not None else 0.0,
                speaker=speakers[i] if speakers is not None else None,
                alignment=chunks,
            )
        )
    return scores


def _align(r_norm: Sequence[str], h_norm: Sequence[str]) -> dict[int, tuple[int, int, int, tuple]]:
    """Counts and chunks from jiwer by utterance index, for utterances with reference words."""
    import jiwer

    scored = [i for i in range(len(r_norm)) if r_norm[i].split()]
    aligned: dict[int, tuple[int, int, int, tuple]] = {}
    if scored:
        out = jiwer.process_words([r_norm[i] for i in scored], [h_norm[i] for i in scored])
        for k, i in enumerate(scored):
            aligned[i] = _count_chunks(out.alignments[k], out.references[k], out.hypotheses[k])
    return aligned


def _count_chunks(chunks, ref: list[str], hyp: list[str]) -> tuple[int, int, int, tuple]:
    s = d = ins = 0
    out = []
    for c in chunks:
        r = ref[c.ref_start_idx : c.ref_end_idx]
        h = hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "substitute":
            s += len(r)
        elif c.type == "delete":
            d += len(r)
        elif c.type == "insert":
            ins += len(h)
        out.append((c.type, " ".join(r), " ".join(h)))
    return s, d, ins, tuple(out)


def error_rate(errors: int, words: int) -> float:
    """Errors per reference word in percent; ``inf`` for errors against no words."""
    if words:
        return PERCENT * errors / words
    return 0.0 if errors == 0 else math.inf


def _group(
    scores: Iterable[UtteranceScore], key: Callable[[UtteranceScore], str], order: Callable[[str], Any] = str
) -> tuple[GroupWer, ...]:
    groups: dict[str, list[UtteranceScore]] = defaultdict(list)
    for s in scores:
        groups[key(s)].append(s)
    out = []
    for name in sorted(groups, key=order):
        g = groups[name]
        e, w = sum(s.errors for s in g), sum(s.ref_words for s in g)
        out.append(
            GroupWer(name, len(g), w, e, round(error_rate(e, w), 4), round(sum(s.duration for s in g), 3))
        )
    return tuple(out)


def per_speaker(scores: Sequence[UtteranceScore]) -> tuple[GroupWer, ...]:
    """WER per speaker (utterances without one are grouped as ``unknown``)."""
    return _group(scores, lambda s: s.speaker or UNKNOWN_SPEAKER)


def duration_bucket(duration: float, edges: Sequence[float] = DURATION_EDGES_S) -> str:
    """The bucket name of a duration: ``"2-4s"``, or ``">30s"`` past the last edge."""
    low = 0.0
    for high in edges:
        if duration < high:
            return f"{low:g}-{high:g}s"
        low = high
    return f">{low:g}s"


def per_duration(
    scores: Sequence[UtteranceScore], edges: Sequence[float] = DURATION_EDGES_S
) -> tuple[GroupWer, ...]:
    """WER per duration bucket, shortest first."""

    def order(name: str) -> float:
        return float(name.lstrip(">").split("-")[0].rstrip("s"))

    return _group(scores, lambda s: duration_bucket(s.duration, edges), order)


def corpus_score(scores: Sequence[UtteranceScore], normaliser: str) -> WerResult:
    """The corpus :class:`WerResult` of scored utterances (WER and CER via metrics)."""
    return word_error_rate([s.ref for s in scores], [s.hyp for s in scores], normaliser)


__all__ = [
    "DURATION_EDGES_S",
    "MAX_SCORED_CHARS",
    "MAX_SCORED_WORDS",
    "UNKNOWN_SPEAKER",
    "corpus_score",
    "duration_bucket",
    "error_rate",
    "per_duration",
    "per_speaker",
    "score_utterances",
    "too_long_to_score",
]
