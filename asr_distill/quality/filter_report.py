"""What the filter did: the report record, how it is counted, and its one text rendering.

Also home of :func:`label_wer`, the one measurement of labels against their reference
transcripts (the filter report, ``asr-distill label`` and benchmarks use it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..metrics import DEFAULT_NORMALISER, WerResult, word_error_rate
from .calibrate import MAX_ALIGN_CHARS, MAX_ALIGN_WORDS, too_long_to_align
from .edits import printable
from .rules import FilterConfig
from .threshold import ThresholdChoice

if TYPE_CHECKING:
    from ..records import PseudoLabel

log = logging.getLogger(__name__)

# Share of kept labels (least confident first) whose audio the review load counts.
DEFAULT_REVIEW_FRACTION = 0.10
# How the confidence threshold was chosen, in words for the report.
THRESHOLD_SOURCES = {
    "user": "given by the user (--threshold)",
    "keep": "the score's quantile keeping the asked fraction (--keep; reference-free)",
    "calibration": "calibrated on the labels' reference transcripts to meet --target-wer",
    "default": "the score's documented default (calibrate.DEFAULT_THRESHOLDS): no references were used",
    "keep_at_least": "lowered from the threshold chosen otherwise to keep the asked share (--keep-at-least; "
    "reference-free)",
}


@dataclass(frozen=True)
class ReasonCount:
    """How many labels one reason dropped, and their hours of audio."""

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
            ``keep``, ``calibration`` or ``default`` (no references: documented default), or
            ``keep_at_least`` when the retention floor lowered ``threshold_before_floor``.
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
    threshold_before_floor: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """For filter_report.json: the threshold's source explained, and -inf (keep all) as None."""
        d = dataclasses.asdict(self)
        d["threshold_note"] = THRESHOLD_SOURCES[self.threshold_source]
        if not math.isfinite(self.threshold):
            d["threshold"] = None
        return d


class Labelled(Protocol):
    """Anything with a label text and, maybe, its reference: a teacher label or a pseudo-label."""

    text: str
    ref_text: str | None


def label_wer(labels: Iterable[Labelled], normaliser: str = DEFAULT_NORMALISER) -> WerResult | None:
    """WER of the labels' texts against their references (None when none has a word).

    An unlabeled pool often carries ``"text": ""`` on every line (NeMo's convention): with
    no reference word the WER is undefined, so None, not ``inf``.

    For measuring labels (all vs kept), never for choosing them (that is calibration's job).
    A label whose reference or text is too long to align (:func:`too_long_to_align`) is left
    out with a warning naming it, so one absurd manifest line cannot stall the measurement.
    """
    pairs, too_long = [], []
    for lab in labels:
        if lab.ref_text is None:
            continue
        if too_long_to_align(lab.ref_text) or too_long_to_align(lab.text):
            too_long.append(getattr(lab, "id", "?"))
            continue
        pairs.append((lab.ref_text, lab.text))
    if too_long:
        log.warning(
            "label WER leaves out %d labels whose reference or text is over %d words or %d "
            "characters, too long to align: %s",
            len(too_long),
            MAX_ALIGN_WORDS,
            MAX_ALIGN_CHARS,
            ", ".join(printable(str(i)) for i in too_long[:5]),
        )
    if not pairs:
        return None
    result = word_error_rate([r for r, _ in pairs], [h for _, h in pairs], normaliser)
    return result if result.ref_words else None


def review_load(kept: Sequence[PseudoLabel], fraction: float) -> float:
    """Minutes of audio to listen to per hour kept, reviewing the least-confident ``fraction``."""
    hours = sum(p.duration for p in kept) / 3600
    if not kept or hours == 0:
        return 0.0
    n = math.ceil(fraction * len(kept))
    ordered = sorted(kept, key=lambda p: -math.inf if p.score is None else p.score)
    return sum(p.duration for p in ordered[:n]) / 60 / hours


def _rules_section(cfg: FilterConfig) -> dict[str, Any]:
    """The rule thresholds as the report lists them (the confidence choice is reported apart)."""
    skip = ("score", "threshold", "keep", "target_wer", "keep_at_least", "correction", "wer_normaliser")
    rules = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    rules["correction"] = dataclasses.asdict(cfg.correction)
    rules["keep"], rules["target_wer"], rules["keep_at_least"] = cfg.keep, cfg.target_wer, cfg.keep_at_least
    return rules


def _by_reason(dropped: Sequence[PseudoLabel]) -> tuple[dict[str, ReasonCount], dict[str, int]]:
    """Primary reason -> count and hours (most first), and every reason -> count."""
    by_reason: dict[str, list[float]] = collections.defaultdict(list)
    any_reason: collections.Counter = collections.Counter()
    for p in dropped:
        by_reason[p.drop_reasons[0]].append(p.duration)
        any_reason.update(p.drop_reasons)
    primary = {
        r: ReasonCount(len(ds), round(sum(ds) / 3600, 4))
        for r, ds in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    }
    return primary, dict(any_reason.most_common())


def build_report(
    labels: Sequence[PseudoLabel],
    *,
    choice: ThresholdChoice,
    config: FilterConfig,
    second: bool,
    review_fraction: float,
) -> FilterReport:
    """Count what the filter kept and dropped, and measure both against references where there are some.

    ``labels`` are every filtered label, kept or dropped, in input order; ``choice`` is the
    confidence rule's score and threshold and how they were chosen.
    """
    kept = [p for p in labels if p.kept]
    dropped = [p for p in labels if not p.kept]
    every = [*kept, *dropped]
    hours = sum(p.duration for p in labels) / 3600
    kept_hours = sum(p.duration for p in kept) / 3600
    by_reason, any_reason = _by_reason(dropped)
    corrections = collections.Counter(c.rule for p in every for c in p.corrections)
    wer_all = label_wer(every, config.wer_normaliser)
    wer_kept = label_wer(kept, config.wer_normaliser)
    return FilterReport(
        utterances=len(labels),
        kept=len(kept),
        dropped=len(dropped),
        retention=len(kept) / len(labels) if labels else 0.0,
        hours=round(hours, 4),
        kept_hours=round(kept_hours, 4),
        retention_hours=kept_hours / hours if hours else 0.0,
        by_reason=by_reason,
        any_reason=any_reason,
        score=choice.score,
        threshold=choice.threshold,
        threshold_source=choice.source,
        threshold_before_floor=choice.floored,
        normaliser=config.correction.normaliser,
        wer_normaliser=config.wer_normaliser,
        corrections=dict(corrections.most_common()),
        second=second,
        rules=_rules_section(config),
        label_wer_all=None if wer_all is None else wer_all.wer,
        label_wer_kept=None if wer_kept is None else wer_kept.wer,
        references=0 if wer_all is None else wer_all.utterances,
        review_fraction=review_fraction,
        review_load_min_per_h=round(review_load(kept, review_fraction), 3),
    )


def format_filter_report(report: Mapping[str, Any], out: str | Path | None = None) -> str:
    """The filter report (as written to filter_report.json) in a few lines of text.

    Args:
        report: :meth:`FilterReport.to_dict`, or filter_report.json read back.
        out: the folder the filter wrote; when given, a last line names the files.
    """
    r = report
    thr = "keep all" if r["threshold"] is None else f">= {r['threshold']:.4g}"
    lines = [
        f"kept {r['kept']} of {r['utterances']} labels ({r['retention']:.1%}, {r['kept_hours']:.2f} of "
        f"{r['hours']:.2f} h) with {r['score']} {thr}: {r['threshold_note']}"
    ]
    if r["by_reason"]:
        reasons = (f"{k} {v['utterances']} ({v['hours'] * 60:.1f} min)" for k, v in r["by_reason"].items())
        lines.append("dropped by reason: " + ", ".join(reasons))
    if r["corrections"]:
        lines.append("corrections: " + ", ".join(f"{k} {v}" for k, v in r["corrections"].items()))
    if r["label_wer_all"] is not None:
        kept = r["label_wer_kept"] if r["label_wer_kept"] is not None else float("nan")
        lines.append(
            f"label WER vs references ({r['wer_normaliser']}): all {r['label_wer_all']:.2f}%, "
            f"kept {kept:.2f}%"
        )
    lines.append(
        f"review load: {r['review_load_min_per_h']:.1f} min of audio per hour kept for the "
        f"{r['review_fraction']:.0%} least confident"
    )
    if out is not None:
        calibration = ", calibration.json, calibration.png" if r.get("calibration") else ""
        lines.append(f"wrote {out}/kept.jsonl, dropped.jsonl, filter_report.json{calibration}")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_REVIEW_FRACTION",
    "THRESHOLD_SOURCES",
    "FilterReport",
    "ReasonCount",
    "build_report",
    "format_filter_report",
    "label_wer",
    "review_load",
]
