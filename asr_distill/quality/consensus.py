"""Consensus of several decodings of one utterance, word by word, against the teacher's.

Any number of second opinions (another model, the teacher with beam search or at a
temperature, an earlier round's student) is aligned to the teacher's words, one opinion at
a time, with a word-level Levenshtein alignment (ROVER with the teacher as the backbone).
Each teacher word then has a vote: how many opinions heard the same word in its place,
and a confidence that combines that agreement with the teacher's own probability for the
word (ROVER's ``alpha * agreement + (1 - alpha) * confidence``). Words some opinions heard
where the teacher heard nothing are kept as insertion slots, so a word the teacher missed
counts against the label too.

Words are compared after the ``format_insensitive`` normaliser, the one the agreement
scores use: "GMEF 39", "G-M-E-F 3 9" and "g m e f three nine" agree word for word. A
:class:`WordVote` is therefore one *spoken* word ("D-A-J-N-H-96." is seven), and it
names the teacher's written words it came from, whose tokens give its probability.

The scores built on this live in :mod:`~asr_distill.quality.confidence`
(``consensus_*``); this module imports only the normaliser registry and the records.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..normalise import get_normaliser
from ..records import Record, TeacherLabel

NORMALISER = "format_insensitive"
# ROVER's alpha: the share of a word's confidence that comes from the other decodings'
# votes; the rest is the teacher's probability for the word. The same 0.8 as the
# agreement_entropy score: agreement decides, the teacher's confidence breaks ties.
AGREEMENT_WEIGHT = 0.8
# A word (or insertion slot) below this confidence is doubtful: with one second opinion,
# every word it disagrees with; with more, a word fewer than about half of them heard.
DOUBTFUL_CONFIDENCE = 0.5
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class WordVote(Record):
    """One spoken word of the teacher's label and what the other decodings heard in its place.

    Attributes:
        word: the teacher's word, normalised.
        written: the teacher's written word(s) it came from ("GMEF39" for "g").
        heard: per opinion, the word aligned to this one ("" where it heard none).
        probability: the teacher's probability for its written word(s): the mean token
            probability, as Whisper's word timestamps compute it (None: tokens unknown).
        confidence: ``AGREEMENT_WEIGHT * agreement + (1 - AGREEMENT_WEIGHT) * probability``;
            whichever of the two is known when the other is not; None when neither is.
    """

    word: str
    written: str
    heard: tuple[str, ...]
    probability: float | None
    confidence: float | None

    @property
    def agree(self) -> int:
        """Opinions that heard this very word."""
        return sum(h == self.word for h in self.heard)

    @property
    def agreement(self) -> float | None:
        """Share of the opinions that heard this word (None without opinions)."""
        return self.agree / len(self.heard) if self.heard else None


@dataclass(frozen=True)
class Insertion(Record):
    """Words some opinions heard between two teacher words, where the teacher heard none.

    Attributes:
        before: index (in :attr:`Consensus.words`) of the teacher word they precede;
            ``len(words)`` for words after the last one.
        heard: per opinion, the words it inserted here ("" where it inserted none).
    """

    before: int
    heard: tuple[str, ...]

    @property
    def confidence(self) -> float:
        """Share of the opinions that, like the teacher, heard nothing here."""
        return sum(not h for h in self.heard) / len(self.heard)


@dataclass(frozen=True)
class Consensus(Record):
    """The teacher's label voted on word by word by ``opinions`` other decodings.

    Attributes:
        words: one vote per spoken word of the teacher's text, in order.
        insertions: the slots where at least one opinion heard words the teacher did not.
        opinions: how many other decodings voted.
        text: the majority vote over every slot (teacher words and insertion slots),
            normalised; the teacher counts as one voter and wins ties, so with one
            opinion it is the teacher's text. For information: the filter keeps the
            teacher's text.
        normaliser: the normaliser the words were compared under.
    """

    words: tuple[WordVote, ...]
    insertions: tuple[Insertion, ...]
    opinions: int
    text: str
    normaliser: str = NORMALISER

    def slot_confidences(self) -> list[float]:
        """The confidence of every slot: each teacher word with one, then each insertion slot."""
        words = [w.confidence for w in self.words if w.confidence is not None]
        return words + [i.confidence for i in self.insertions]

    @property
    def agreement(self) -> float:
        """Mean share of opinions agreeing with the teacher, over words and insertion slots.

        1.0 when nobody heard a word; NaN without opinions.
        """
        if not self.opinions:
            return math.nan
        slots = [w.agreement for w in self.words] + [i.confidence for i in self.insertions]
        return sum(slots) / len(slots) if slots else 1.0

    @property
    def min_confidence(self) -> float:
        """The lowest slot confidence (1.0 when there is no slot, NaN when none is known)."""
        slots = self.slot_confidences()
        if not slots:
            return 1.0 if not self.words else math.nan
        return min(slots)

    def doubtful(self, threshold: float = DOUBTFUL_CONFIDENCE) -> tuple[int, ...]:
        """Indices of the teacher words whose confidence is below ``threshold``."""
        return tuple(
            i for i, w in enumerate(self.words) if w.confidence is not None and w.confidence < threshold
        )

    def doubtful_share(self, threshold: float = DOUBTFUL_CONFIDENCE) -> float:
        """Share of the slots (words and insertion slots) below ``threshold`` (0.0 without slots)."""
        slots = self.slot_confidences()
        return sum(c < threshold for c in slots) / len(slots) if slots else 0.0


# ---- alignment ------------------------------------------------------------------------


def align_words(
    reference: Sequence[str], hypothesis: Sequence[str]
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """``hypothesis`` aligned to ``reference`` word by word (Levenshtein, unit costs).

    Returns:
        ``(heard, inserted)``: ``heard[i]`` is the hypothesis word in reference word
        ``i``'s place ("" for a deletion); ``inserted[g]`` the hypothesis words between
        reference words ``g - 1`` and ``g`` (``len(reference) + 1`` gaps).
    """
    from rapidfuzz.distance import Levenshtein  # installed with jiwer

    heard = [""] * len(reference)
    inserted: list[list[str]] = [[] for _ in range(len(reference) + 1)]
    for op in Levenshtein.opcodes(list(reference), list(hypothesis)):
        n = min(op.src_end - op.src_start, op.dest_end - op.dest_start)
        for k in range(n):  # equal and replace blocks pair one to one
            heard[op.src_start + k] = hypothesis[op.dest_start + k]
        if op.dest_end - op.dest_start > n:  # an insert block (or the rest of a longer replace)
            inserted[op.src_start + n].extend(hypothesis[op.dest_start + n : op.dest_end])
    return tuple(heard), tuple(tuple(g) for g in inserted)


def _vote(teacher: str | tuple[str, ...], heard: Sequence) -> str | tuple[str, ...]:
    """The majority over the teacher and the opinions; the teacher wins ties."""
    counts = Counter([teacher, *heard])
    best = max(counts.values())
    return teacher if counts[teacher] == best else next(h for h in heard if counts[h] == best)


def spoken_words(text: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """The normalised words of ``text``, each with the span ``(first, last)`` of written words it came from.

    The whole text is normalised (number words and "rub out" join across written words),
    then matched back to the words of each written word normalised alone.
    """
    norm = get_normaliser(NORMALISER)
    own = [(w, k) for k, written in enumerate(text.split()) for w in norm(written).split()]
    whole = tuple(norm(text).split())
    if not own:
        return whole, tuple((0, 0) for _ in whole)
    heard, inserted = align_words([w for w, _ in own], whole)
    spans: list[tuple[int, int]] = []
    for gap in range(len(own) + 1):
        near = own[min(gap, len(own) - 1)][1]  # inserted words belong to the next written word
        spans += [(near, near)] * len(inserted[gap])
        if gap < len(own) and heard[gap]:
            spans.append((own[gap][1], own[gap][1]))
        elif gap < len(own) and spans:  # a word the whole-text form merged into the one before
            spans[-1] = (spans[-1][0], own[gap][1])
    return whole, tuple(spans)


def word_probabilities(label: TeacherLabel) -> tuple[float, ...] | None:
    """The teacher's probability for each written word of ``label.text`` (mean token probability).

    Tokens are mapped to words by concatenating their texts (Whisper starts a word with a
    space). None when they do not spell the text (no tokens, or a multi-byte character
    split between tokens).
    """
    joined = "".join(t.text for t in label.tokens)
    if not label.tokens or joined.split() != label.text.split():
        return None
    word_of_char, k = [], -1
    for i, ch in enumerate(joined):
        if not ch.isspace() and (i == 0 or joined[i - 1].isspace()):
            k += 1
        word_of_char.append(k)
    probs: list[list[float]] = [[] for _ in label.text.split()]
    start = 0
    for t in label.tokens:
        chars = [word_of_char[i] for i in range(start, start + len(t.text)) if not joined[i].isspace()]
        for w in sorted(set(chars)):
            probs[w].append(math.exp(t.logprob))
        start += len(t.text)
    return tuple(sum(p) / len(p) if p else math.nan for p in probs)


# ---- consensus ------------------------------------------------------------------------


def consensus(
    label: TeacherLabel | str,
    opinions: Sequence[TeacherLabel | str],
    *,
    weight: float = AGREEMENT_WEIGHT,
) -> Consensus:
    """Vote on the teacher's label word by word with the other decodings of the same audio.

    Args:
        label: the teacher's label (its tokens give word probabilities), or a bare text.
        opinions: the other decodings, labels or texts, in any number (none gives word
            confidences from the teacher's probabilities alone).
        weight: ROVER's alpha, the share of a word's confidence that is agreement.

    Raises:
        ValueError: if ``weight`` is outside [0, 1].
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight is a share in [0, 1], got {weight}")
    texts = tuple(o if isinstance(o, str) else o.text for o in opinions)
    if isinstance(label, str):
        return _consensus(label, None, texts, weight)
    return _consensus(label.text, word_probabilities(label), texts, weight)


@lru_cache(maxsize=_CACHE_SIZE)  # every consensus_* score of a label asks for the same vote
def _consensus(
    text: str, probabilities: tuple[float, ...] | None, opinions: tuple[str, ...], weight: float
) -> Consensus:
    words, spans = spoken_words(text)
    written = text.split()
    norm = get_normaliser(NORMALISER)
    aligned = [align_words(words, norm(o).split()) for o in opinions]
    votes, out = [], []
    for i, (word, (a, b)) in enumerate(zip(words, spans, strict=True)):
        heard = tuple(h[i] for h, _ in aligned)
        p = _span_probability(probabilities, a, b)
        votes.append(WordVote(word, " ".join(written[a : b + 1]), heard, p, _combine(heard, word, p, weight)))
    insertions = []
    for gap in range(len(words) + 1):
        heard = tuple(" ".join(ins[gap]) for _, ins in aligned)
        if any(heard):
            insertions.append(Insertion(gap, heard))
        out.append(_vote("", heard))
        if gap < len(words):
            out.append(_vote(words[gap], votes[gap].heard))
    return Consensus(tuple(votes), tuple(insertions), len(opinions), " ".join(w for w in out if w))


def _span_probability(probabilities: tuple[float, ...] | None, a: int, b: int) -> float | None:
    if probabilities is None:
        return None
    ps = [p for p in probabilities[a : b + 1] if not math.isnan(p)]
    return sum(ps) / len(ps) if ps else None


def _combine(heard: tuple[str, ...], word: str, probability: float | None, weight: float) -> float | None:
    agreement = sum(h == word for h in heard) / len(heard) if heard else None
    if agreement is None or probability is None:
        return probability if agreement is None else agreement
    return weight * agreement + (1.0 - weight) * probability


def word_confidences(label: TeacherLabel, opinions: Sequence[TeacherLabel | str]) -> tuple[float | None, ...]:
    """One confidence per spoken word of the teacher's label: what a loss mask or a review page needs."""
    return tuple(w.confidence for w in consensus(label, opinions).words)


__all__ = [
    "AGREEMENT_WEIGHT",
    "DOUBTFUL_CONFIDENCE",
    "NORMALISER",
    "Consensus",
    "Insertion",
    "WordVote",
    "align_words",
    "consensus",
    "spoken_words",
    "word_confidences",
    "word_probabilities",
]
