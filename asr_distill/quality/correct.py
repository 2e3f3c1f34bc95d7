"""Light, recorded corrections of a teacher's transcript.

A correction never hides what the teacher said: each rule returns the new text and, when
it changed something, a :class:`Correction` (rule, old, new) that travels with the label.
The rules are deliberately small and conservative; anything they cannot fix safely is
left to the filter (drop with a reason) or to human review.

Order (see :func:`correct_text`): trim repetition loops, drop stock hallucinated phrases
(only when confidence is low), replace near-misses of a domain lexicon, then normalise
the written form with a registered normaliser (``spoken_form`` by default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..normalise import get_normaliser
from ..records import Correction
from ..teacher.loops import LOOP_MIN_REPEATS
from ..teacher.loops import repeated_ngram as find_loop

# Stock phrases Whisper produces on silence, noise and music (from its subtitle training
# data). Matched case-insensitively on word boundaries, punctuation ignored.
HALLUCINATION_PHRASES: tuple[str, ...] = (
    "thank you for watching",
    "thanks for watching",
    "thank you so much for watching",
    "please subscribe",
    "like and subscribe",
    "don't forget to subscribe",
    "see you in the next video",
    "subtitles by the amara.org community",
    "subtitles by",
    "captions by",
    "transcribed by",
    "translated by",
    "amara.org",
)
# The confidence (any [0, 1] score) below which a stock phrase is treated as hallucinated.
HALLUCINATION_MAX_CONFIDENCE = 0.9
# Lexicon correction: rapidfuzz ratio (0-100) a word must reach against a lexicon entry,
# and the shortest word considered (short words have too many close neighbours).
LEXICON_MIN_SIMILARITY = 85.0
LEXICON_MIN_WORD_LEN = 4
NO_NORMALISER = "none"

_WORD_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class CorrectionConfig:
    """Which corrections run, and their thresholds.

    Attributes:
        normaliser: registry name applied last, or ``"none"`` to keep the teacher's form.
        lexicon: domain words (product, place, person names) that near-misses snap to.
        lexicon_min_similarity: rapidfuzz ratio (0-100) needed for a replacement.
        hallucination_max_confidence: stock phrases are removed only below this confidence.
        trim_loops: whether repeated n-gram loops are cut to one copy.
    """

    normaliser: str = "spoken_form"
    lexicon: tuple[str, ...] = ()
    lexicon_min_similarity: float = LEXICON_MIN_SIMILARITY
    hallucination_max_confidence: float = HALLUCINATION_MAX_CONFIDENCE
    trim_loops: bool = True

    def __post_init__(self) -> None:
        if self.normaliser != NO_NORMALISER:
            get_normaliser(self.normaliser)  # fails early, naming the known ones
        if not 0 <= self.lexicon_min_similarity <= 100:
            raise ValueError(f"lexicon_min_similarity is a 0-100 ratio, got {self.lexicon_min_similarity}")


def _words(text: str) -> list[str]:
    return text.split()


def _core(word: str) -> str:
    """A word without surrounding punctuation, lower-cased: what loops and phrases compare."""
    return _WORD_EDGE.match(word).group(2).lower()


def trim_loops(text: str, min_repeats: int = LOOP_MIN_REPEATS) -> tuple[str, Correction | None]:
    """Cut every run of an n-gram repeated ``min_repeats``+ times down to one copy.

    Whisper's decoder can fall into a loop ("the the the the ...", "1, 2, 1, 2, 1, 2, ...")
    until its token cap; the first copy is usually what was said.
    """
    words = _words(text)
    changed = False
    while (loop := find_loop(words, min_repeats)) is not None:
        start, n, copies = loop
        words = words[: start + n] + words[start + n * copies :]
        changed = True
    if not changed:
        return text, None
    new = " ".join(words)
    return new, Correction("trim_loops", text, new)


def _phrase_pattern(phrase: str) -> re.Pattern:
    parts = [re.escape(p) for p in phrase.split()]
    # "Subtitles by <anyone>": the credit runs to the end of its sentence.
    tail = r"[^.!?]*" if phrase.endswith(" by") else ""
    return re.compile(r"(?<!\w)" + r"\W+".join(parts) + r"(?!\w)" + tail + r"[.!?,]*", re.IGNORECASE)


_PHRASE_PATTERNS = tuple((p, _phrase_pattern(p)) for p in HALLUCINATION_PHRASES)


def find_hallucination_phrases(text: str) -> list[str]:
    """Stock phrases of :data:`HALLUCINATION_PHRASES` found in ``text``."""
    return [p for p, pattern in _PHRASE_PATTERNS if pattern.search(text)]


def drop_hallucination_phrases(
    text: str, confidence: float, max_confidence: float = HALLUCINATION_MAX_CONFIDENCE
) -> tuple[str, Correction | None]:
    """Remove stock subtitle phrases ("Thank you for watching.") when confidence is low.

    A confident "thanks for watching" may have been said, so it stays (and the filter's
    ``hallucination_phrase`` rule decides); an unsure one is almost always invented.
    """
    if confidence >= max_confidence or not find_hallucination_phrases(text):
        return text, None
    new = text
    for _, pattern in _PHRASE_PATTERNS:
        new = pattern.sub(" ", new)
    new = _SPACES.sub(" ", new).strip()
    return new, Correction("hallucination_phrase", text, new)


def lexicon_correct(
    text: str, lexicon: Sequence[str], min_similarity: float = LEXICON_MIN_SIMILARITY
) -> tuple[str, Correction | None]:
    """Replace words that nearly match a domain-lexicon entry ("Zendeskk" -> "Zendesk").

    Each word (punctuation kept around it) is compared with every entry by rapidfuzz's
    ``ratio`` (0-100, case-insensitive); a word that is already an entry, or shorter
    than :data:`LEXICON_MIN_WORD_LEN`, is left alone. Multi-word entries are matched
    against the same number of consecutive words.
    """
    if not lexicon:
        return text, None
    from rapidfuzz import fuzz  # installed with jiwer

    words = _words(text)
    entries = [(e, e.lower(), len(e.split())) for e in lexicon if e.strip()]
    known = {low for _, low, _ in entries}
    out: list[str] = []
    i = 0
    changed = False
    while i < len(words):
        best: tuple[float, str, int] | None = None
        for entry, low, n in entries:
            chunk = words[i : i + n]
            if len(chunk) < n:
                continue
            lead = _WORD_EDGE.match(chunk[0]).group(1)
            trail = _WORD_EDGE.match(chunk[-1]).group(3)
            core = " ".join(_core(w) for w in chunk)
            if core in known or len(core) < LEXICON_MIN_WORD_LEN:
                continue
            sim = fuzz.ratio(core, low)
            if sim >= min_similarity and (best is None or sim > best[0]):
                best = (sim, lead + entry + trail, n)
        if best is None:
            out.append(words[i])
            i += 1
        else:
            out.append(best[1])
            i += best[2]
            changed = True
    if not changed:
        return text, None
    new = " ".join(out)
    return new, Correction("lexicon", text, new)


def normalise_form(text: str, normaliser: str) -> tuple[str, Correction | None]:
    """Rewrite ``text`` with a registered normaliser; recorded as rule ``normalise:<name>``."""
    if normaliser == NO_NORMALISER:
        return text, None
    new = get_normaliser(normaliser)(text)
    if new == text:
        return text, None
    return new, Correction(f"normalise:{normaliser}", text, new)


def correct_text(
    text: str, confidence: float, config: CorrectionConfig = CorrectionConfig()
) -> tuple[str, tuple[Correction, ...]]:
    """Apply every enabled correction in order; returns the text and what changed.

    Args:
        text: the teacher's transcript.
        confidence: a [0, 1] confidence of this label (gates hallucination removal).
        config: which corrections run and their thresholds.
    """
    steps = []
    if config.trim_loops:
        steps.append(lambda t: trim_loops(t))
    steps.append(lambda t: drop_hallucination_phrases(t, confidence, config.hallucination_max_confidence))
    steps.append(lambda t: lexicon_correct(t, config.lexicon, config.lexicon_min_similarity))
    steps.append(lambda t: normalise_form(t, config.normaliser))
    corrections: list[Correction] = []
    for step in steps:
        text, c = step(text)
        if c is not None:
            corrections.append(c)
    return text, tuple(corrections)


def read_lexicon(path) -> tuple[str, ...]:
    """One entry per line; blank lines and lines starting with ``#`` are ignored.

    Raises:
        FileNotFoundError: naming the file, for ``--lexicon``.
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"lexicon {p} not found (give a text file with one word or name per line)")
    lines = (line.strip() for line in p.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


__all__ = [
    "HALLUCINATION_PHRASES",
    "Correction",
    "CorrectionConfig",
    "correct_text",
    "drop_hallucination_phrases",
    "find_hallucination_phrases",
    "find_loop",
    "lexicon_correct",
    "normalise_form",
    "read_lexicon",
    "trim_loops",
]
