"""The filter stage: correct every teacher label lightly, then keep it or drop it for a reason.

:func:`filter_labels` corrects each label (:mod:`~asr_distill.quality.correct`), scores it
(:mod:`~asr_distill.quality.confidence`), runs the named rules of
:mod:`~asr_distill.quality.rules` with the confidence threshold chosen by
:mod:`~asr_distill.quality.threshold`, and counts the result in a
:class:`~asr_distill.quality.filter_report.FilterReport`. The result is a
:class:`PseudoLabel` per input: the corrected text (a NeMo manifest's ``text``), the
teacher's original text, the corrections and verdicts, every confidence score and the
teacher's provenance, so nothing the teacher said or the filter did is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..records import PseudoLabel, ReviewEntry, TeacherLabel, Verdict
from . import confidence as conf
from .calibrate import Calibration
from .consensus import word_confidences
from .correct import correct_text, lexicon_correct
from .filter_report import DEFAULT_REVIEW_FRACTION, FilterReport, build_report, label_wer, review_load
from .rules import CONFIDENCE_RULE, MIN_AGREEMENT, RULES, Candidate, FilterConfig, apply_rules
from .threshold import choose_threshold, default_score, default_threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterResult:
    """What :func:`filter_labels` returns: kept and dropped labels, the report, any calibration."""

    kept: tuple[PseudoLabel, ...]
    dropped: tuple[PseudoLabel, ...]
    report: FilterReport
    calibration: Calibration | None = None


def _gate_confidence(scores: Mapping[str, float]) -> float:
    """A [0, 1] confidence for gating corrections: mean token probability, capped by agreement."""
    c = math.exp(scores["avg_logprob"])
    a = scores.get("agreement", math.nan)
    return c if math.isnan(a) else min(c, a)


def score_all(
    labels: Sequence[TeacherLabel], second: Mapping[str, conf.Opinions] | None
) -> list[dict[str, float]]:
    """Every available score of every label."""
    names = conf.available_scores(second is not None)
    second = second or {}
    return [{n: conf.SCORES[n].fn(lab, second.get(lab.id)) for n in names} for lab in labels]


def lexicon_view(
    labels: Sequence[TeacherLabel], second: Mapping[str, conf.Opinions] | None, config: FilterConfig
) -> tuple[Sequence[TeacherLabel], Mapping[str, conf.Opinions] | None]:
    """The labels and second opinions with the domain lexicon's replacements, for scoring.

    Two models that mishear an invented name two ways ("Noble Line" / "Novaline") disagree
    about a word the lexicon will put right in the kept label; scored on the raw texts, that
    disagreement drops a label the correction fixes and says nothing about what stays wrong.
    Agreement is therefore measured between the texts as corrected (both sides the same way);
    without a lexicon everything is as given.
    """
    lexicon, similarity = config.correction.lexicon, config.correction.lexicon_min_similarity
    if not lexicon:
        return labels, second

    def fix(lab: TeacherLabel) -> TeacherLabel:
        return dataclasses.replace(lab, text=lexicon_correct(lab.text, lexicon, similarity)[0])

    fixed = None
    if second is not None:
        fixed = {k: tuple(fix(o) for o in conf.opinions_of(v)) for k, v in second.items()}
    return [fix(lab) for lab in labels], fixed


def _candidates(
    labels: Sequence[TeacherLabel], table: Sequence[Mapping[str, float]], score: str, config: FilterConfig
) -> list[Candidate]:
    """Each label corrected and scored, before its confidence threshold is known (-inf)."""
    out = []
    for lab, s in zip(labels, table, strict=True):
        text, corrections = correct_text(lab.text, _gate_confidence(s), config.correction)
        out.append(Candidate(lab, text, corrections, s, score, -math.inf))
    return out


def filter_labels(
    labels: Iterable[TeacherLabel],
    *,
    second: Mapping[str, conf.Opinions] | None = None,
    config: FilterConfig | None = None,
    review_fraction: float = DEFAULT_REVIEW_FRACTION,
) -> FilterResult:
    """Correct, score and filter teacher labels.

    Args:
        labels: the teacher's labels.
        second: id -> the same utterance decoded by one other model, or a tuple of several
            (for ``agreement`` and the ``consensus_*`` scores, and per-word confidence).
        config: thresholds (default :class:`FilterConfig`); see
            :func:`asr_distill.quality.threshold.choose_threshold` for the confidence one.
        review_fraction: share of kept labels (least confident first) whose audio the
            report's review load counts.

    Returns:
        kept and dropped :class:`PseudoLabel` s, the report, and the calibration when
        ``target_wer`` made one (references from ``ref_text``).

    Raises:
        ValueError: for a score needing ``second`` without one, a score with no default
            threshold and nothing to choose one, or ``target_wer`` without references.
    """
    labels, config = list(labels), config or FilterConfig()
    score_name = config.score or default_score(second is not None)
    if conf.SCORES[score_name].needs_second and second is None:
        raise ValueError(f"score {score_name!r} needs a second decoding (--second LABELS)")
    table = score_all(*lexicon_view(labels, second, config))
    candidates = _candidates(labels, table, score_name, config)
    # Every rule but the confidence one first: the threshold is chosen among the survivors.
    others = [r for name, r in RULES.items() if name != CONFIDENCE_RULE]
    pre = [apply_rules(c, config, others) for c in candidates]
    survivors = [i for i, vs in enumerate(pre) if all(v.keep for v in vs)]
    texts = [c.text for c in candidates]
    choice = choose_threshold(labels, texts, table, survivors, score_name, config)
    out = []
    for c, vs in zip(candidates, pre, strict=True):
        c = dataclasses.replace(c, score_name=choice.score, threshold=choice.threshold)
        out.append(_pseudo_label(c, (*vs, RULES[CONFIDENCE_RULE](c, config))))
    if second is not None:
        out = [_with_word_confidence(p, lab, second.get(lab.id)) for p, lab in zip(out, labels, strict=True)]
    report = build_report(
        out, choice=choice, config=config, second=second is not None, review_fraction=review_fraction
    )
    log.info(
        "kept %d of %d labels (%.1f%%) with %s >= %.3g (%s)",
        *(report.kept, report.utterances, 100 * report.retention),
        *(choice.score, choice.threshold, choice.source),
    )
    kept = tuple(p for p in out if p.kept)
    return FilterResult(kept, tuple(p for p in out if not p.kept), report, choice.calibration)


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _pseudo_label(c: Candidate, verdicts: tuple[Verdict, ...]) -> PseudoLabel:
    lab = c.label
    verdicts = tuple(
        dataclasses.replace(v, value=_clean(v.value), threshold=_clean(v.threshold)) for v in verdicts
    )
    return PseudoLabel(
        id=lab.id,
        audio_filepath=lab.audio_filepath,
        offset=lab.offset,
        duration=lab.duration,
        text=c.text,
        teacher_text=lab.text,
        language=lab.language,
        score_name=c.score_name,
        score=_clean(c.scores.get(c.score_name, math.nan)),
        scores={k: _clean(v) for k, v in c.scores.items()},
        corrections=c.corrections,
        filter_history=verdicts,
        drop_reasons=tuple(v.rule for v in verdicts if not v.keep),
        provenance=lab.provenance,
        ref_text=lab.ref_text,
        speaker=lab.speaker,
        words=lab.words,
    )


def _with_word_confidence(p: PseudoLabel, label: TeacherLabel, second: conf.Opinions) -> PseudoLabel:
    """``p`` with one confidence per spoken word of the teacher's text.

    Each is the agreement of every second opinion and the teacher's own probability: what a
    review page or a loss mask reads.
    """
    opinions = conf.opinions_of(second)
    if not opinions:
        return p
    return dataclasses.replace(p, word_confidence=tuple(_clean(x) for x in word_confidences(label, opinions)))


def read_labels(path) -> list[TeacherLabel]:
    """Teacher labels from a file written by ``asr-distill label`` (skip records are ignored).

    Raises:
        ValueError: naming the file and line of a record that is not a label.
    """
    from ..jsonl import read_jsonl

    out = []
    for n, d in enumerate(read_jsonl(path), start=1):
        if "reason" in d and "text" not in d:
            continue
        try:
            out.append(TeacherLabel.from_dict(d))
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{path}: record {n} is not a teacher label ({e}); give a file written by `asr-distill label`"
            ) from None
    return out


def read_pseudo_labels(path) -> list[PseudoLabel]:
    """Pseudo-labels from kept.jsonl / dropped.jsonl written by ``asr-distill filter``."""
    from ..jsonl import read_jsonl

    out = []
    for n, d in enumerate(read_jsonl(path), start=1):
        try:
            out.append(PseudoLabel.from_dict(d))
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{path}: record {n} is not a pseudo-label ({e}); give kept.jsonl or dropped.jsonl "
                "written by `asr-distill filter`"
            ) from None
    return out


# Names that lived here before the rules, the threshold choice and the report had modules
# of their own; importers may keep using them from here.
__all__ = [
    "MIN_AGREEMENT",
    "RULES",
    "Candidate",
    "FilterConfig",
    "FilterReport",
    "FilterResult",
    "PseudoLabel",
    "ReviewEntry",
    "Verdict",
    "apply_rules",
    "default_threshold",
    "filter_labels",
    "label_wer",
    "read_labels",
    "read_pseudo_labels",
    "review_load",
    "score_all",
]
