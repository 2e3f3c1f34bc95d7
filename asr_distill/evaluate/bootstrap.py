"""Bootstrap confidence intervals of a WER, and the paired bootstrap between two models.

Whole utterances are resampled; a paired comparison draws the same resamples for both
models (one seed), so the noise of the test set cancels out of their difference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..metrics import DEFAULT_NORMALISER, PERCENT
from ..records import Interval, PairedComparison, UtteranceScore
from .scoring import error_rate

DEFAULT_RESAMPLES = 1000  # bootstrap resamples: the CI's ends move by < 0.1 point beyond this
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
RESAMPLE_CHUNK = 100  # resamples drawn at a time: memory stays ~ chunk x utterances


def _arrays(scores: Sequence[UtteranceScore]) -> tuple[np.ndarray, np.ndarray]:
    errors = np.array([s.errors for s in scores], dtype=np.int64)
    words = np.array([s.ref_words for s in scores], dtype=np.int64)
    return errors, words


def _resampled_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield index arrays of shape ``(chunk, n)``, the same stream for the same seed.

    Two calls with one seed draw identical resamples: that is what makes a bootstrap *paired*.
    """
    rng = np.random.default_rng(seed)
    left = resamples
    while left > 0:
        k = min(RESAMPLE_CHUNK, left)
        yield rng.integers(0, n, size=(k, n))
        left -= k


def _percentiles(values: np.ndarray, level: float, resamples: int) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(round(float(low), 4), round(float(high), 4), level, resamples)


def _check_bootstrap(n: int, resamples: int, level: float) -> None:
    if n == 0:
        raise ValueError("cannot bootstrap an empty test set")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_wer(
    scores: Sequence[UtteranceScore],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Percentile bootstrap interval of the corpus WER, resampling whole utterances.

    Utterances, not words, are the unit: errors cluster within an utterance (one
    misheard name costs several words), and resampling words would make the interval
    too narrow.
    """
    _check_bootstrap(len(scores), resamples, level)
    errors, words = _arrays(scores)
    values = []
    for idx in _resampled_indices(len(scores), resamples, seed):
        w = words[idx].sum(axis=1)
        values.append(PERCENT * errors[idx].sum(axis=1) / np.maximum(w, 1))
    return _percentiles(np.concatenate(values), level, resamples)


def paired_bootstrap(
    a: Sequence[UtteranceScore],
    b: Sequence[UtteranceScore],
    *,
    names: tuple[str, str] = ("A", "B"),
    normaliser: str = DEFAULT_NORMALISER,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Compare two models on the same utterances with one set of resamples.

    Both score lists are matched by utterance id; utterances only one model has (one
    decoder skipped them) are left out and the count used is reported.

    Raises:
        ValueError: if the two lists share no utterance ids.
    """
    b_by_id = {s.id: s for s in b}
    pairs = [(s, b_by_id[s.id]) for s in a if s.id in b_by_id]
    _check_bootstrap(len(pairs), resamples, level)
    ea, wa = _arrays([p[0] for p in pairs])
    eb, _ = _arrays([p[1] for p in pairs])
    deltas, not_better = [], 0
    for idx in _resampled_indices(len(pairs), resamples, seed):
        w = np.maximum(wa[idx].sum(axis=1), 1)
        d = PERCENT * (ea[idx].sum(axis=1) - eb[idx].sum(axis=1)) / w
        deltas.append(d)
        not_better += int((d >= 0).sum())
    total_w = int(wa.sum())
    wer_a, wer_b = error_rate(int(ea.sum()), total_w), error_rate(int(eb.sum()), total_w)
    return PairedComparison(
        a=names[0],
        b=names[1],
        normaliser=normaliser,
        wer_a=round(wer_a, 4),
        wer_b=round(wer_b, 4),
        delta=round(wer_a - wer_b, 4),
        delta_ci=_percentiles(np.concatenate(deltas), level, resamples),
        p_value=not_better / resamples,
        utterances=len(pairs),
    )


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "bootstrap_wer",
    "paired_bootstrap",
]
