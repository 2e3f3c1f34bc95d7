"""A simulated reviewer: how many label errors a minute of listening removes, by word or by utterance.

The reference transcript (``ref_text``) stands in for the person, and both reviewers are
perfect at what they do; what differs is what they hear and what they may change.

- ``utterance`` (whole-utterance review, least confident first): the reviewer hears the
  whole clip and the label becomes the reference.
- ``utterance_queue``: the same, in the word queue's order, to tell the order's share of
  the gain from the spans'.
- ``word``: labels in :func:`~asr_distill.quality.review_queue.review_queue` order; the
  reviewer hears only the padded doubtful runs (the whole clip where a doubtful word has
  no timing, or the label has no doubtful word) and changes only highlighted words: each
  is replaced by the reference word aligned to it, or removed where the reference has
  none there. A reference word the label lacks is added only where it sits next to a
  highlighted word (it is in the audio played); every other error stays. Labels with no
  doubtful word are not reviewed in this mode.

Errors are word edits against the reference after the ``format_insensitive`` normaliser,
the one the word confidences were computed under. Items are taken in queue order until
the next one would exceed the budget of minutes listened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..normalise import get_normaliser
from ..records import PseudoLabel
from .consensus import DOUBTFUL_CONFIDENCE, NORMALISER, spoken_words
from .review_queue import PAD, Pad, QueueEntry, review_queue, spoken_confidences

MODES = ("utterance", "utterance_queue", "word")
# Word-confidence bins of :func:`confidence_table` (lower edges; the last bin holds 1.0).
CONFIDENCE_EDGES = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class SimResult:
    """One simulated review session.

    Attributes:
        mode: one of :data:`MODES`.
        budget_min: minutes of listening allowed.
        items: labels reviewed.
        listened_min: minutes of audio played.
        ref_words: words in the references of every label (the WER denominator).
        errors_before: label errors over every label before review.
        errors_removed: label errors the review removed.
        wer_before: label WER (percent) before review.
        wer_after: label WER (percent) after review.
        removed_per_min: errors removed per minute listened.
        changeable: the words the reviewer could change: every word of a clip heard whole,
            the highlighted ones in ``word`` mode. Per minute listened, the most errors it
            could remove if every one were wrong (the reference words it may add aside).
    """

    mode: str
    budget_min: float
    items: int
    listened_min: float
    ref_words: int
    errors_before: int
    errors_removed: int
    wer_before: float
    wer_after: float
    removed_per_min: float
    changeable: int = 0


def _edits(a: Sequence[str], b: Sequence[str]) -> int:
    from rapidfuzz.distance import Levenshtein  # installed with jiwer

    return Levenshtein.distance(list(a), list(b))


def highlighted(entry: QueueEntry) -> set[int]:
    """The indices of the label's spoken words under a highlighted written word."""
    spans = spoken_words(entry.label.text)[1]
    return {j for j, (a, b) in enumerate(spans) if any(w.doubtful for w in entry.words[a : b + 1])}


def fix_highlighted(entry: QueueEntry, ref: Sequence[str]) -> list[str]:
    """The label's normalised words after a perfect reviewer changed only the highlighted ones."""
    from rapidfuzz.distance import Levenshtein

    hyp = spoken_words(entry.label.text)[0]
    hot = highlighted(entry)
    out: list[str] = []
    for op in Levenshtein.opcodes(list(hyp), list(ref)):
        h, r = list(range(op.src_start, op.src_end)), list(ref[op.dest_start : op.dest_end])
        if op.tag == "equal":
            out += [hyp[j] for j in h]
            continue
        paired = min(len(h), len(r))
        out += [r[k] if h[k] in hot else hyp[h[k]] for k in range(paired)]
        out += [hyp[j] for j in h[paired:] if j not in hot]  # a highlighted extra word is deleted
        near = {op.src_start - 1, op.src_end} if not h else set(h)
        if r[paired:] and near & hot:  # a missing word next to (or inside) a highlighted run
            out += r[paired:]
    return out


def wrong_words(hyp: Sequence[str], ref: Sequence[str]) -> list[bool]:
    """For each word of ``hyp``, whether the alignment to ``ref`` substitutes or deletes it."""
    from rapidfuzz.distance import Levenshtein

    wrong = [False] * len(hyp)
    for op in Levenshtein.opcodes(list(hyp), list(ref)):
        if op.tag in ("replace", "delete"):
            wrong[op.src_start : op.src_end] = [True] * (op.src_end - op.src_start)
    return wrong


def confidence_table(
    labels: Sequence[PseudoLabel],
    edges: Sequence[float] = CONFIDENCE_EDGES,
    threshold: float = DOUBTFUL_CONFIDENCE,
) -> dict:
    """How often a word of each confidence is wrong, and where the label errors sit.

    Each spoken word of a label's text (``format_insensitive``) with a known confidence
    (carried over corrections, :func:`~asr_distill.quality.review_queue.spoken_confidences`) is
    counted in its confidence bin, and as wrong when the alignment to the reference
    substitutes or deletes it. ``missing`` counts reference words the labels lack (they
    have no confidence of their own), so ``errors`` = wrong words + missing. What the
    review queue can reach is the ``flagged`` share: wrong words below ``threshold``.

    Raises:
        ValueError: a label without a reference transcript.
    """
    norm = get_normaliser(NORMALISER)
    rows = [{"from": lo, "words": 0, "wrong": 0} for lo in edges]
    errors = missing = unknown = 0
    for p in labels:
        if p.ref_text is None:
            raise ValueError(f"label {p.id} has no ref_text: the table needs references")
        (hyp, confs), ref = spoken_confidences(p), norm(p.ref_text).split()
        wrong, edits = wrong_words(hyp, ref), _edits(ref, hyp)
        errors += edits
        missing += edits - sum(wrong)
        for c, bad in zip(confs, wrong, strict=True):
            if c is None:
                unknown += bad
                continue
            row = rows[max(i for i, lo in enumerate(edges) if c >= lo)]
            row["words"] += 1
            row["wrong"] += bad
    for row in rows:
        row["error_rate"] = round(row["wrong"] / row["words"], 3) if row["words"] else None
    flagged = sum(r["wrong"] for r in rows if r["from"] < threshold)
    return {
        "bins": rows,
        "errors": errors,
        "wrong_flagged": flagged,
        "wrong_unflagged": sum(r["wrong"] for r in rows) - flagged,
        "wrong_without_confidence": unknown,
        "missing": missing,
        "threshold": threshold,
    }


def _reviewed_errors(entry: QueueEntry, ref: list[str], mode: str) -> int:
    return 0 if mode != "word" else _edits(ref, fix_highlighted(entry, ref))


def simulate(
    labels: Sequence[PseudoLabel],
    mode: str,
    budget_min: float,
    *,
    threshold: float = DOUBTFUL_CONFIDENCE,
    pad: Pad = PAD,
) -> SimResult:
    """Review ``labels`` in ``mode`` until ``budget_min`` minutes of audio have been played.

    Raises:
        ValueError: an unknown mode, or a label without a reference transcript.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    missing = [p.id for p in labels if p.ref_text is None]
    if missing:
        raise ValueError(
            f"{len(missing)} labels have no ref_text (e.g. {missing[0]}): the simulation needs them"
        )
    norm = get_normaliser(NORMALISER)
    refs = {p.id: norm(p.ref_text).split() for p in labels}
    before = {p.id: _edits(refs[p.id], spoken_words(p.text)[0]) for p in labels}
    unit = "utterance" if mode == "utterance" else "word"
    queue = review_queue(labels, unit, threshold, pad)
    listened, removed, items, changeable = 0.0, 0, 0, 0
    for e in queue:
        if mode == "word" and not e.runs:
            break  # the rest have nothing highlighted (the queue puts them last)
        seconds = e.label.duration if mode.startswith("utterance") else e.listen_s
        if listened + seconds > budget_min * 60:
            break
        listened += seconds
        items += 1
        removed += before[e.label.id] - _reviewed_errors(e, refs[e.label.id], mode)
        changeable += len(highlighted(e)) if mode == "word" else len(spoken_words(e.label.text)[0])
    words, total = sum(len(r) for r in refs.values()), sum(before.values())
    return SimResult(
        mode,
        budget_min,
        items,
        round(listened / 60, 4),
        words,
        total,
        removed,
        round(100 * total / words, 3) if words else 0.0,
        round(100 * (total - removed) / words, 3) if words else 0.0,
        round(removed / (listened / 60), 3) if listened else 0.0,
        changeable,
    )


__all__ = [
    "CONFIDENCE_EDGES",
    "MODES",
    "SimResult",
    "confidence_table",
    "fix_highlighted",
    "highlighted",
    "simulate",
    "wrong_words",
]
