"""Word and character error rates under a named normaliser.

Both sides go through the same normaliser from :mod:`asr_distill.normalise`, and the
result records its name: a WER without its normaliser cannot be compared with another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .normalise import get_normaliser
from .records import WerResult

DEFAULT_NORMALISER = "format_insensitive"
PERCENT = 100.0


def _rate(errors: int, total: int) -> float:
    if total:
        return PERCENT * errors / total
    return 0.0 if errors == 0 else math.inf


def word_error_rate(
    refs: Sequence[str], hyps: Sequence[str], normaliser: str = DEFAULT_NORMALISER
) -> WerResult:
    """Score hypotheses against references after normalising both with ``normaliser``.

    An utterance whose normalised reference is empty (silence, or a reference made only
    of punctuation) is kept out of jiwer, which older versions refuse, and its
    hypothesis words and characters are counted as insertions: a teacher that
    hallucinates on silence must cost something.

    Args:
        refs: reference transcripts.
        hyps: hypotheses, aligned with ``refs``.
        normaliser: a name registered in :data:`asr_distill.normalise.NORMALISERS`.

    Raises:
        ValueError: if the sequences differ in length or the normaliser is unknown.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; they must pair up")
    norm = get_normaliser(normaliser)
    import jiwer  # a core dependency, but only needed once something is scored

    scored_refs: list[str] = []
    scored_hyps: list[str] = []
    empty_ref_words = 0
    empty_ref_chars = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = norm(ref), norm(hyp)
        if r.split():
            scored_refs.append(r)
            scored_hyps.append(h)
        else:
            empty_ref_words += len(h.split())
            empty_ref_chars += len(h)

    subs = dels = ins = hits = 0
    cer_errors = ref_chars = 0
    if scored_refs:
        words = jiwer.process_words(scored_refs, scored_hyps)
        subs, dels, ins, hits = words.substitutions, words.deletions, words.insertions, words.hits
        chars = jiwer.process_characters(scored_refs, scored_hyps)
        cer_errors = chars.substitutions + chars.deletions + chars.insertions
        ref_chars = chars.substitutions + chars.deletions + chars.hits
    ins += empty_ref_words
    cer_errors += empty_ref_chars
    ref_words = subs + dels + hits
    return WerResult(
        wer=_rate(subs + dels + ins, ref_words),
        cer=_rate(cer_errors, ref_chars),
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        ref_words=ref_words,
        normaliser=normaliser,
        utterances=len(refs),
    )
