"""Choosing the confidence rule's score and threshold.

In order of precedence: the caller's ``threshold``, the quantile keeping ``keep`` of the
labels (reference-free), calibration against reference transcripts to meet ``target_wer``,
or the score's documented default (:data:`asr_distill.quality.calibrate.DEFAULT_THRESHOLDS`).
The threshold is chosen among the labels every other rule keeps. ``keep_at_least`` then lowers a
threshold that would keep less than that share of the labels: a default set on one corpus can
keep too little of a harder one (on speechocean762 the agreement default keeps 39%), and a floor
is the reference-free way to keep enough to train on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..records import TeacherLabel
from .calibrate import DEFAULT_THRESHOLDS, Calibration, calibrate
from .rules import FilterConfig

log = logging.getLogger(__name__)

# Score used when none is named: agreement with a second decoding when there is one
# (NOTES.md: on AN4 test, 1.4 % WER where base and tiny.en agree vs 19 % where they do
# not), else the teacher's own mean token confidence.
DEFAULT_SCORE_WITH_SECOND = "agreement_entropy"
DEFAULT_SCORE_WITHOUT_SECOND = "avg_logprob"


@dataclass(frozen=True)
class ThresholdChoice:
    """The confidence rule's score and threshold, how they were chosen, and the calibration if one chose them.

    ``source`` is ``user``, ``keep``, ``calibration`` or ``default``, or ``keep_at_least`` when
    the retention floor lowered the threshold chosen otherwise (that one is kept in ``floored``).
    """

    score: str
    threshold: float
    source: str
    calibration: Calibration | None = None
    floored: float | None = None


def default_score(has_second: bool) -> str:
    """Agreement with the second model when there is one (the best signal), else the teacher's confidence."""
    return DEFAULT_SCORE_WITH_SECOND if has_second else DEFAULT_SCORE_WITHOUT_SECOND


def default_threshold(score: str) -> float:
    """The documented reference-free threshold of ``score``.

    Raises:
        ValueError: when ``score`` has none, saying what to give instead.
    """
    if score not in DEFAULT_THRESHOLDS:
        raise ValueError(
            f"score {score!r} has no documented default threshold; give --threshold, "
            f"--keep, or labels with references and --target-wer "
            f"(scores with defaults: {', '.join(DEFAULT_THRESHOLDS)})"
        )
    return DEFAULT_THRESHOLDS[score]


def threshold_for_keep(values: Sequence[float], keep: float, total: int) -> float:
    """The highest threshold keeping at least ``keep * total`` of ``values`` (-inf keeps all)."""
    want = math.ceil(keep * total - 1e-9)
    ordered = sorted((v for v in values if not math.isnan(v)), reverse=True)
    if want <= 0:
        return ordered[0] if ordered else -math.inf
    if want > len(ordered):
        log.warning(
            "keep=%.2f asks for %d labels but only %d pass the other rules; keeping all of them",
            keep,
            want,
            len(ordered),
        )
        return -math.inf
    return ordered[want - 1]


def choose_threshold(
    labels: Sequence[TeacherLabel],
    texts: Sequence[str],
    table: Sequence[Mapping[str, float]],
    survivors: Sequence[int],
    score: str,
    config: FilterConfig,
) -> ThresholdChoice:
    """The confidence threshold, by the precedence in the module doc.

    Args:
        labels: every label.
        texts: their corrected texts.
        table: their scores, by name.
        survivors: indices of the labels every other rule keeps.
        score: the score to threshold unless calibration picks another.
        config: the filter's configuration.

    Raises:
        ValueError: ``target_wer`` without references or out of reach, or a score with no
            default threshold and nothing to choose one.
    """
    if config.keep is not None:
        values = [table[i][score] for i in survivors]
        return ThresholdChoice(score, threshold_for_keep(values, config.keep, len(labels)), "keep")
    if config.threshold is not None:
        choice = ThresholdChoice(score, config.threshold, "user")
    elif config.target_wer is not None:
        choice = _calibrated(labels, texts, table, survivors, config)
    else:
        choice = ThresholdChoice(score, default_threshold(score), "default")
    return _floored(choice, table, survivors, config.keep_at_least, len(labels))


def _floored(
    choice: ThresholdChoice,
    table: Sequence[Mapping[str, float]],
    survivors: Sequence[int],
    keep_at_least: float | None,
    total: int,
) -> ThresholdChoice:
    """``choice``, its threshold lowered where it keeps less than ``keep_at_least`` of ``total``."""
    if keep_at_least is None:
        return choice
    floor = threshold_for_keep([table[i][choice.score] for i in survivors], keep_at_least, total)
    if floor >= choice.threshold:
        return choice
    return dataclasses.replace(choice, threshold=floor, source="keep_at_least", floored=choice.threshold)


def _calibrated(labels, texts, table, survivors, config: FilterConfig) -> ThresholdChoice:
    refd = [i for i in survivors if labels[i].ref_text is not None]
    if not refd:
        raise ValueError("--target-wer needs labels with reference transcripts (ref_text); these have none")
    cal = calibrate(
        {n: [table[i][n] for i in refd] for n in table[0]},
        [labels[i].ref_text for i in refd],
        [texts[i] for i in refd],
        target_wer=config.target_wer,
        score=config.score,
        normaliser=config.wer_normaliser,
        total=sum(lab.ref_text is not None for lab in labels),
    )
    if cal.chosen is None:
        raise ValueError(
            f"no threshold of {cal.score!r} reaches label WER {config.target_wer}% on the "
            f"{len(refd)} labels with references; raise --target-wer"
        )
    return ThresholdChoice(cal.score, cal.chosen.threshold, "calibration", cal)


__all__ = [
    "DEFAULT_SCORE_WITHOUT_SECOND",
    "DEFAULT_SCORE_WITH_SECOND",
    "ThresholdChoice",
    "choose_threshold",
    "default_score",
    "default_threshold",
    "threshold_for_keep",
]
