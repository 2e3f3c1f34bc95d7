"""The filter stage: correct every teacher label lightly, then keep it or drop it for a reason.

Each rule is a small named function ``rule(candidate, config) -> Verdict``; a label is
kept when every rule keeps it, and a dropped label lists every rule that dropped it (the
first, in :data:`RULES` order, is its primary reason in the report). The result is a
:class:`PseudoLabel` per input: the corrected text (a NeMo manifest's ``text``), the
teacher's original text, the corrections and verdicts, every confidence score and the
teacher's provenance, so nothing the teacher said or the filter did is lost.

The confidence rule (``low_confidence``) uses one named score from
:mod:`asr_distill.confidence` and a threshold chosen, in order of precedence, by the
caller (``threshold``), by retention (``keep``, reference-free), by calibration against
references (``target_wer``), or by the documented default of
:data:`asr_distill.calibrate.DEFAULT_THRESHOLDS`; the report names which.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import confidence as conf
from .calibrate import DEFAULT_THRESHOLDS, Calibration, calibrate
from .correct import Correction, CorrectionConfig, correct_text, find_hallucination_phrases, find_loop
from .metrics import DEFAULT_NORMALISER, word_error_rate
from .normalise import get_normaliser
from .records import Provenance, TeacherLabel

log = logging.getLogger(__name__)

# Score used when none is named: agreement with a second decoding when there is one
# (NOTES.md: on AN4 test, 1.4 % WER where base and tiny.en agree vs 19 % where they do
# not), else the teacher's own mean token confidence.
DEFAULT_SCORE_WITH_SECOND = "agreement_entropy"
DEFAULT_SCORE_WITHOUT_SECOND = "avg_logprob"
# Whisper's silence rule (transcribe): no_speech_prob above 0.6 AND avg_logprob below -1.
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
COMPRESSION_RATIO_MAX = 2.4
# A trimmed loop that had been more than this share of the teacher's words leaves too
# little trustworthy text: the label is dropped rather than kept trimmed.
LOOP_MAX_SHARE = 0.5
# Below this agreement the two models heard different utterances: drop whatever the score.
MIN_AGREEMENT = 0.5
# wrong_language needs the detector this sure (short clips fool it; see rule_wrong_language).
LANGUAGE_MIN_PROB = 0.8
MIN_DURATION_S = 0.3
MAX_DURATION_S = 30.0  # Whisper's window; a longer label was cut wrongly upstream
# How the confidence threshold was chosen, in words for the report.
THRESHOLD_SOURCES = {
    "user": "given by the user (--threshold)",
    "keep": "the score's quantile keeping the asked fraction (--keep; reference-free)",
    "calibration": "calibrated on the labels' reference transcripts to meet --target-wer",
    "default": "the score's documented default (calibrate.DEFAULT_THRESHOLDS): no references were used",
}


@dataclass(frozen=True)
class Verdict:
    """One rule's decision on one label.

    Attributes:
        rule: the rule's name (``no_speech``, ``low_confidence``...).
        keep: False drops the label.
        reason: what was seen, in words (empty when kept).
        value: the measured quantity, when the rule has one.
        threshold: the limit it was compared with.
    """

    rule: str
    keep: bool
    reason: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class ReviewEntry:
    """One human decision on a label: the audit trail of ``asr-distill review import``."""

    reviewer: str
    time: str
    decision: str  # "accept" or "reject"
    old: str
    new: str
    note: str = ""


@dataclass(frozen=True)
class PseudoLabel:
    """A filtered, corrected pseudo-label; one JSON line of kept.jsonl or dropped.jsonl.

    ``text`` is the label to train on (a NeMo manifest's ``text``); ``teacher_text`` is
    what the teacher wrote. ``drop_reasons`` is empty for a kept label; its first entry is
    the primary reason. ``scores`` holds every computed confidence (None where undefined),
    ``score``/``score_name`` the one the filter used.
    """

    id: str
    audio_filepath: str
    offset: float
    duration: float
    text: str
    teacher_text: str
    language: str
    score_name: str
    score: float | None
    scores: dict[str, float | None]
    corrections: tuple[Correction, ...]
    filter_history: tuple[Verdict, ...]
    drop_reasons: tuple[str, ...]
    provenance: Provenance
    review: tuple[ReviewEntry, ...] = ()
    ref_text: str | None = None
    speaker: str | None = None

    @property
    def kept(self) -> bool:
        return not self.drop_reasons

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PseudoLabel:
        d = dict(d)
        d["corrections"] = tuple(Correction(**c) for c in d.get("corrections", ()))
        d["filter_history"] = tuple(Verdict(**v) for v in d.get("filter_history", ()))
        d["review"] = tuple(ReviewEntry(**r) for r in d.get("review", ()))
        d["drop_reasons"] = tuple(d.get("drop_reasons", ()))
        d["provenance"] = Provenance(**d["provenance"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class FilterConfig:
    """Every threshold the rules use. Defaults are documented next to their constants.

    ``threshold`` None means "resolve it" (keep / target_wer / default, see module doc).
    """

    score: str | None = None
    threshold: float | None = None
    keep: float | None = None
    target_wer: float | None = None
    min_agreement: float = MIN_AGREEMENT
    no_speech_prob: float = NO_SPEECH_PROB
    no_speech_logprob: float = NO_SPEECH_LOGPROB
    compression_ratio_max: float = COMPRESSION_RATIO_MAX
    loop_max_share: float = LOOP_MAX_SHARE
    min_words_per_s: float = conf.MIN_WORDS_PER_S
    max_words_per_s: float = conf.MAX_WORDS_PER_S
    min_duration_s: float = MIN_DURATION_S
    max_duration_s: float = MAX_DURATION_S
    language: str | None = "en"
    language_min_prob: float = LANGUAGE_MIN_PROB
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    wer_normaliser: str = DEFAULT_NORMALISER

    def __post_init__(self) -> None:
        chosen = [
            n
            for n, v in (("threshold", self.threshold), ("keep", self.keep), ("target_wer", self.target_wer))
            if v is not None
        ]
        if len(chosen) > 1:
            raise ValueError(f"give only one of threshold, keep, target_wer (got {', '.join(chosen)})")
        if self.keep is not None and not 0 < self.keep <= 1:
            raise ValueError(f"keep is a fraction in (0, 1], got {self.keep}")
        if self.target_wer is not None and self.target_wer < 0:
            raise ValueError(f"target_wer is a WER in percent (>= 0), got {self.target_wer}")
        if self.score is not None:
            conf.get_score(self.score)
        get_normaliser(self.wer_normaliser)


@dataclass(frozen=True)
class Candidate:
    """What the rules look at: the teacher's label, its corrected text, its scores."""

    label: TeacherLabel
    text: str
    corrections: tuple[Correction, ...]
    scores: Mapping[str, float]
    score_name: str
    threshold: float


Rule = Callable[[Candidate, FilterConfig], Verdict]


def _keep(rule: str, value: float | None = None, threshold: float | None = None) -> Verdict:
    return Verdict(rule, True, "", value, threshold)


# ---- rules ---------------------------------------------------------------------------


def rule_empty(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Nothing left to learn: no word after correction and normalisation."""
    words = len(get_normaliser(cfg.wer_normaliser)(c.text).split())
    if words == 0:
        return Verdict("empty", False, f"no words in {c.text!r}", 0.0, 1.0)
    return _keep("empty", float(words), 1.0)


def rule_no_speech(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Whisper's own silence rule: no_speech_prob high and the decode unsure."""
    p, lp = c.label.no_speech_prob, c.label.avg_logprob
    if p > cfg.no_speech_prob and lp < cfg.no_speech_logprob:
        return Verdict(
            "no_speech",
            False,
            f"no_speech_prob {p:.2f} > {cfg.no_speech_prob} and avg_logprob "
            f"{lp:.2f} < {cfg.no_speech_logprob}",
            p,
            cfg.no_speech_prob,
        )
    return _keep("no_speech", p, cfg.no_speech_prob)


def rule_too_short(c: Candidate, cfg: FilterConfig) -> Verdict:
    d = c.label.duration
    if d < cfg.min_duration_s:
        return Verdict("too_short", False, f"{d:.2f} s < {cfg.min_duration_s} s", d, cfg.min_duration_s)
    return _keep("too_short", d, cfg.min_duration_s)


def rule_too_long(c: Candidate, cfg: FilterConfig) -> Verdict:
    d = c.label.duration
    if d > cfg.max_duration_s:
        return Verdict("too_long", False, f"{d:.2f} s > {cfg.max_duration_s} s", d, cfg.max_duration_s)
    return _keep("too_long", d, cfg.max_duration_s)


def rule_wrong_language(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The detector is sure it heard another language than the one the data should be in.

    Unsure detections are not enough: on AN4 train, base's detector said Greek, Thai or
    Maori for 8 short English clips ("Yes", "110", "L-E-U-L-I-E-T-T-E") at probabilities
    0.32-0.58, and every one of those transcripts was right.
    """
    if cfg.language is None:
        return _keep("wrong_language")
    seen = c.label.detected_language or c.label.language
    sure = c.label.language_prob is None or c.label.language_prob >= cfg.language_min_prob
    if seen and seen != cfg.language and sure:
        return Verdict(
            "wrong_language",
            False,
            f"detected {seen!r}, expected {cfg.language!r}",
            c.label.language_prob,
            None,
        )
    return _keep("wrong_language", c.label.language_prob)


def rule_repetition_loop(c: Candidate, cfg: FilterConfig) -> Verdict:
    """A decoding loop: compression ratio too high, an untrimmed loop, or a trimmed loop that was most of it.

    Trimming keeps the first copy; when the loop was most of the output, what is left is a guess.
    """
    cr = c.label.compression_ratio
    if cr > cfg.compression_ratio_max:
        return Verdict(
            "repetition_loop",
            False,
            f"compression ratio {cr:.2f} > {cfg.compression_ratio_max}",
            cr,
            cfg.compression_ratio_max,
        )
    trimmed = [corr for corr in c.corrections if corr.rule == "trim_loops"]
    # Loops are judged on the teacher's words, as trim_loops sees them: after spelling-out,
    # "L-L-L-I-P-S" has four "l"s in a row and is no loop.
    if not trimmed and find_loop(c.label.text.split()) is not None:
        return Verdict("repetition_loop", False, f"repeated n-gram in {c.label.text!r} (not trimmed)", cr)
    for corr in trimmed:
        if corr.rule == "trim_loops":
            before, after = len(corr.old.split()), len(corr.new.split())
            share = 1.0 - after / max(before, 1)
            if share > cfg.loop_max_share:
                return Verdict(
                    "repetition_loop",
                    False,
                    f"a loop was {share:.0%} of the teacher's words",
                    share,
                    cfg.loop_max_share,
                )
    return _keep("repetition_loop", cr, cfg.compression_ratio_max)


def rule_hallucination_phrase(c: Candidate, cfg: FilterConfig) -> Verdict:
    """A stock subtitle phrase ("thanks for watching") still in the label after correction."""
    found = find_hallucination_phrases(c.text)
    if found:
        return Verdict("hallucination_phrase", False, f"stock phrase {found[0]!r}")
    return _keep("hallucination_phrase")


def rule_rate_out_of_range(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Too many or too few spoken words for the audio's length (a loop, or missed speech)."""
    words = conf.spoken_words(c.text)
    if words == 0:
        return _keep("rate_out_of_range")  # the empty rule owns this case
    rate = words / max(c.label.duration, 1e-6)
    if rate < cfg.min_words_per_s:
        return Verdict(
            "rate_out_of_range",
            False,
            f"{rate:.2f} words/s < {cfg.min_words_per_s}",
            rate,
            cfg.min_words_per_s,
        )
    if rate > cfg.max_words_per_s:
        return Verdict(
            "rate_out_of_range",
            False,
            f"{rate:.2f} words/s > {cfg.max_words_per_s}",
            rate,
            cfg.max_words_per_s,
        )
    return _keep("rate_out_of_range", rate)


def rule_teacher_disagreement(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The second decoding heard something else entirely (character agreement below ``min_agreement``).

    Characters, not words: two models often split spelled letters and digits differently
    ("XGIC 2" vs "xgic2"), which is no disagreement about what was said.
    """
    a = c.scores.get("agreement_chars")
    if a is None or math.isnan(a):
        return _keep("teacher_disagreement")  # no second decoding: nothing to compare
    if a < cfg.min_agreement:
        return Verdict(
            "teacher_disagreement", False, f"agreement {a:.2f} < {cfg.min_agreement}", a, cfg.min_agreement
        )
    return _keep("teacher_disagreement", a, cfg.min_agreement)


def rule_low_confidence(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The selected confidence score is below the threshold (unscored counts as low)."""
    s = c.scores.get(c.score_name, math.nan)
    if math.isnan(s):
        return Verdict(
            "low_confidence",
            False,
            f"{c.score_name} undefined (no second decoding for this id?)",
            None,
            c.threshold,
        )
    if s < c.threshold:
        return Verdict("low_confidence", False, f"{c.score_name} {s:.3f} < {c.threshold:.3f}", s, c.threshold)
    return _keep("low_confidence", s, c.threshold)


# In priority order: a label's primary drop reason is the first rule that drops it.
RULES: dict[str, Rule] = {
    "too_short": rule_too_short,
    "too_long": rule_too_long,
    "empty": rule_empty,
    "no_speech": rule_no_speech,
    "wrong_language": rule_wrong_language,
    "hallucination_phrase": rule_hallucination_phrase,
    "repetition_loop": rule_repetition_loop,
    "rate_out_of_range": rule_rate_out_of_range,
    "teacher_disagreement": rule_teacher_disagreement,
    "low_confidence": rule_low_confidence,
}


def apply_rules(c: Candidate, cfg: FilterConfig, rules: Iterable[Rule] | None = None) -> tuple[Verdict, ...]:
    """Every rule's verdict on one candidate, in :data:`RULES` order."""
    return tuple(rule(c, cfg) for rule in (RULES.values() if rules is None else rules))


# ---- the stage -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonCount:
    utterances: int
    hours: float


@dataclass(frozen=True)
class FilterReport:
    """What the filter did, for filter_report.json.

    Attributes:
        utterances / kept / dropped: label counts; ``retention`` = kept / utterances.
        hours / kept_hours: audio; ``retention_hours`` = kept_hours / hours.
        by_reason: primary reason -> count and hours (sums to the dropped labels).
        any_reason: every rule -> labels it dropped (a label may count under several).
        score, threshold, threshold_source: the confidence rule; source is ``user``,
            ``keep``, ``calibration`` or ``default`` (no references: documented default).
        normaliser: the correction normaliser; ``wer_normaliser`` scores WERs.
        corrections: correction rule -> labels it changed (kept and dropped).
        second: whether a second decoding gave the agreement score.
        label_wer_all / label_wer_kept: WER (%) against references where labels have them.
        review_load_min_per_h: minutes of audio to listen to per hour kept when the
            ``review_fraction`` least-confident kept labels go to review.
    """

    utterances: int
    kept: int
    dropped: int
    retention: float
    hours: float
    kept_hours: float
    retention_hours: float
    by_reason: dict[str, ReasonCount]
    any_reason: dict[str, int]
    score: str
    threshold: float
    threshold_source: str
    normaliser: str
    wer_normaliser: str
    corrections: dict[str, int]
    second: bool
    rules: dict[str, Any]
    label_wer_all: float | None = None
    label_wer_kept: float | None = None
    references: int = 0
    review_fraction: float = 0.0
    review_load_min_per_h: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["threshold_note"] = THRESHOLD_SOURCES[self.threshold_source]
        if not math.isfinite(self.threshold):
            d["threshold"] = None
        return d


@dataclass(frozen=True)
class FilterResult:
    kept: tuple[PseudoLabel, ...]
    dropped: tuple[PseudoLabel, ...]
    report: FilterReport
    calibration: Calibration | None = None


DEFAULT_REVIEW_FRACTION = 0.10


def default_score(has_second: bool) -> str:
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


def _gate_confidence(scores: Mapping[str, float]) -> float:
    """A [0, 1] confidence for gating corrections: mean token probability, capped by agreement."""
    c = math.exp(scores["avg_logprob"])
    a = scores.get("agreement", math.nan)
    return c if math.isnan(a) else min(c, a)


def _threshold_for_keep(values: Sequence[float], keep: float, total: int) -> float:
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


def score_all(
    labels: Sequence[TeacherLabel], second: Mapping[str, TeacherLabel] | None
) -> list[dict[str, float]]:
    """Every available score of every label."""
    names = conf.available_scores(second is not None)
    second = second or {}
    return [{n: conf.SCORES[n].fn(lab, second.get(lab.id)) for n in names} for lab in labels]


def filter_labels(
    labels: Iterable[TeacherLabel],
    *,
    second: Mapping[str, TeacherLabel] | None = None,
    config: FilterConfig = FilterConfig(),
    review_fraction: float = DEFAULT_REVIEW_FRACTION,
) -> FilterResult:
    """Correct, score and filter teacher labels.

    Args:
        labels: the teacher's labels.
        second: id -> the same utterance decoded by a second model (for ``agreement``).
        config: thresholds; see :class:`FilterConfig` for how the confidence threshold
            is resolved.
        review_fraction: share of kept labels (least confident first) whose audio the
            report's review load counts.

    Returns:
        kept and dropped :class:`PseudoLabel` s, the report, and the calibration when
        ``target_wer`` made one (references from ``ref_text``).

    Raises:
        ValueError: for a score needing ``second`` without one, a score with no default
            threshold and nothing to choose one, or ``target_wer`` without references.
    """
    labels = list(labels)
    score_name = config.score or default_score(second is not None)
    if conf.SCORES[score_name].needs_second and second is None:
        raise ValueError(f"score {score_name!r} needs a second decoding (--second LABELS)")
    table = score_all(labels, second)
    texts: list[tuple[str, tuple[Correction, ...]]] = [
        correct_text(lab.text, _gate_confidence(s), config.correction)
        for lab, s in zip(labels, table, strict=True)
    ]
    # Every rule but the confidence one first: the threshold is chosen among the survivors.
    others = [r for name, r in RULES.items() if name != "low_confidence"]
    pre = [
        apply_rules(Candidate(lab, t, cs, s, score_name, -math.inf), config, others)
        for lab, (t, cs), s in zip(labels, texts, table, strict=True)
    ]
    survivors = [i for i, vs in enumerate(pre) if all(v.keep for v in vs)]
    calibration = None
    if config.threshold is not None:
        threshold, source = config.threshold, "user"
    elif config.keep is not None:
        threshold = _threshold_for_keep([table[i][score_name] for i in survivors], config.keep, len(labels))
        source = "keep"
    elif config.target_wer is not None:
        refd = [i for i in survivors if labels[i].ref_text is not None]
        if not refd:
            raise ValueError(
                "--target-wer needs labels with reference transcripts (ref_text); these have none"
            )
        n_refd = sum(lab.ref_text is not None for lab in labels)
        calibration = calibrate(
            {n: [table[i][n] for i in refd] for n in table[0]},
            [labels[i].ref_text for i in refd],
            [texts[i][0] for i in refd],
            target_wer=config.target_wer,
            score=config.score,
            normaliser=config.wer_normaliser,
            total=n_refd,
        )
        score_name = calibration.score
        if calibration.chosen is None:
            raise ValueError(
                f"no threshold of {score_name!r} reaches label WER {config.target_wer}% on the "
                f"{len(refd)} labels with references; raise --target-wer"
            )
        threshold, source = calibration.chosen.threshold, "calibration"
    else:
        threshold, source = default_threshold(score_name), "default"
    kept: list[PseudoLabel] = []
    dropped: list[PseudoLabel] = []
    for lab, (text, cs), s, vs in zip(labels, texts, table, pre, strict=True):
        c = Candidate(lab, text, cs, s, score_name, threshold)
        verdicts = vs + (rule_low_confidence(c, config),)
        p = _pseudo_label(c, verdicts)
        (kept if p.kept else dropped).append(p)
    report = _report(
        labels, kept, dropped, score_name, threshold, source, config, second is not None, review_fraction
    )
    log.info(
        "kept %d of %d labels (%.1f%%) with %s >= %.3g (%s)",
        report.kept,
        report.utterances,
        100 * report.retention,
        score_name,
        threshold,
        source,
    )
    return FilterResult(tuple(kept), tuple(dropped), report, calibration)


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
    )


def review_load(kept: Sequence[PseudoLabel], fraction: float) -> float:
    """Minutes of audio to listen to per hour kept, reviewing the least-confident ``fraction``."""
    hours = sum(p.duration for p in kept) / 3600
    if not kept or hours == 0:
        return 0.0
    n = math.ceil(fraction * len(kept))
    ordered = sorted(kept, key=lambda p: -math.inf if p.score is None else p.score)
    return sum(p.duration for p in ordered[:n]) / 60 / hours


def label_wer(labels: Sequence[PseudoLabel], normaliser: str) -> tuple[float | None, int]:
    """WER (%) of the labels' texts against their references, and how many had one."""
    pairs = [(p.ref_text, p.text) for p in labels if p.ref_text is not None]
    if not pairs:
        return None, 0
    return word_error_rate([r for r, _ in pairs], [h for _, h in pairs], normaliser).wer, len(pairs)


def _report(
    labels, kept, dropped, score_name, threshold, source, cfg, has_second, review_fraction
) -> FilterReport:
    hours = sum(lab.duration for lab in labels) / 3600
    kept_hours = sum(p.duration for p in kept) / 3600
    by_reason: dict[str, list[float]] = collections.defaultdict(list)
    any_reason: collections.Counter = collections.Counter()
    for p in dropped:
        by_reason[p.drop_reasons[0]].append(p.duration)
        any_reason.update(p.drop_reasons)
    corrections = collections.Counter(c.rule for p in (*kept, *dropped) for c in p.corrections)
    wer_all, refs = label_wer([*kept, *dropped], cfg.wer_normaliser)
    wer_kept, _ = label_wer(kept, cfg.wer_normaliser)
    rules = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("score", "threshold", "keep", "target_wer", "correction", "wer_normaliser")
    }
    rules["correction"] = dataclasses.asdict(cfg.correction)
    rules["keep"], rules["target_wer"] = cfg.keep, cfg.target_wer
    return FilterReport(
        utterances=len(labels),
        kept=len(kept),
        dropped=len(dropped),
        retention=len(kept) / len(labels) if labels else 0.0,
        hours=round(hours, 4),
        kept_hours=round(kept_hours, 4),
        retention_hours=kept_hours / hours if hours else 0.0,
        by_reason={
            r: ReasonCount(len(ds), round(sum(ds) / 3600, 4))
            for r, ds in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
        },
        any_reason=dict(any_reason.most_common()),
        score=score_name,
        threshold=threshold,
        threshold_source=source,
        normaliser=cfg.correction.normaliser,
        wer_normaliser=cfg.wer_normaliser,
        corrections=dict(corrections.most_common()),
        second=has_second,
        rules=rules,
        label_wer_all=wer_all,
        label_wer_kept=wer_kept,
        references=refs,
        review_fraction=review_fraction,
        review_load_min_per_h=round(review_load(kept, review_fraction), 3),
    )


def read_labels(path) -> list[TeacherLabel]:
    """Teacher labels from a file written by ``asr-distill label`` (skip records are ignored).

    Raises:
        ValueError: naming the file and line of a record that is not a label.
    """
    from .jsonl import read_jsonl

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
    from .jsonl import read_jsonl

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


__all__ = [
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
