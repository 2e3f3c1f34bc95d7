"""Calibration: label WER as a function of retention, for every confidence score.

Given labels whose reference transcripts are known (a small hand-checked subset), each
score orders the labels from most to least trustworthy; keeping the top fraction gives
one (retention, label WER) point per distinct threshold. The threshold that keeps the
most labels while meeting ``target_wer`` (or that keeps ``keep`` of them at the lowest
WER) is the calibrated choice. Without references nothing can be calibrated: the filter
then uses the documented defaults of :data:`DEFAULT_THRESHOLDS` and its report says so.

WER here is corpus WER (errors summed over the kept labels / their reference words) with
a named normaliser, the same figure :func:`asr_distill.metrics.word_error_rate` gives for
that subset; per-utterance error counts are computed once with it and then summed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..metrics import DEFAULT_NORMALISER, word_error_rate

# Reference-free defaults, per score: used when neither references nor --threshold/--keep
# are given. Each is a property of the signal, not a figure fitted to a test set:
DEFAULT_THRESHOLDS: dict[str, float] = {
    # the second model heard exactly the same words (format-insensitive)
    "agreement": 1.0,
    # 0.8 * agreement + 0.2 * mean Gibbs confidence (exp): exact agreement needs confidence
    # >= 0.1; one word in ten different (0.9) needs confidence >= 0.5, which only clear long
    # utterances have; a pair differing by one word in four or more (< 0.775) never passes
    "agreement_entropy": 0.82,
    # whisper.transcribe's own fallback trigger (logprob_threshold = -1.0)
    "avg_logprob": -1.0,
    "token_logprob_mean": -1.0,
    # no single token below probability e^-3 (~5 %)
    "token_logprob_min": -3.0,
    # whisper's no_speech_threshold 0.6
    "no_speech": 0.4,
    # whisper's compression_ratio_threshold 2.4
    "compression": 1.0,
    # a plausible speaking rate
    "speaking_rate": 1.0,
}


@dataclass(frozen=True)
class CurvePoint:
    """Keeping labels with score >= ``threshold`` keeps ``kept`` of them at label WER ``wer`` (%)."""

    threshold: float
    kept: int
    retention: float
    wer: float


@dataclass(frozen=True)
class ScoreCurve:
    """One score's retention/WER curve, most selective point first."""

    score: str
    points: tuple[CurvePoint, ...]


@dataclass(frozen=True)
class Calibration:
    """The curves of every score and the chosen (score, threshold).

    Attributes:
        normaliser: the WER normaliser (both sides).
        utterances: the labels the retention is a fraction of.
        scored: labels with references on the curves.
        wer_all: label WER (%) of all scored labels, unfiltered.
        target_wer: the WER asked for, or None.
        keep: the retention asked for, or None.
        score: the chosen score (given, or the best one for the target).
        chosen: the chosen point on that score's curve (None if the target is out of reach).
        curves: every score's curve.
    """

    normaliser: str
    utterances: int
    scored: int
    wer_all: float
    target_wer: float | None
    keep: float | None
    score: str
    chosen: CurvePoint | None
    curves: tuple[ScoreCurve, ...]

    def to_dict(self) -> dict:
        """For calibration.json: infinite thresholds become None, which JSON can hold."""
        return finite_for_json(asdict(self))


def finite_for_json(obj):
    """JSON has no inf/NaN: they become None (a threshold of -inf means "keep all")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_for_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_for_json(v) for v in obj]
    return obj


# A text longer than this is not aligned: normalising and aligning a 50 MB manifest line takes
# minutes and gigabytes. An hour of speech is about 9,000 words; 20 characters a word is generous.
MAX_ALIGN_WORDS = 10_000
MAX_ALIGN_CHARS = 20 * MAX_ALIGN_WORDS


def too_long_to_align(text: str) -> bool:
    """More than ``MAX_ALIGN_WORDS`` words (or ``MAX_ALIGN_CHARS`` characters), counted at bounded cost."""
    return len(text) > MAX_ALIGN_CHARS or len(text.split(maxsplit=MAX_ALIGN_WORDS)) > MAX_ALIGN_WORDS


def utterance_errors(
    refs: Sequence[str], hyps: Sequence[str], normaliser: str = DEFAULT_NORMALISER
) -> list[tuple[int, int]]:
    """Per utterance: (word errors, reference words) under ``normaliser``.

    A pair too long to align (:func:`too_long_to_align`) gets ``(0, 0)``: it is not scored.
    """
    out = []
    for r, h in zip(refs, hyps, strict=True):
        if too_long_to_align(r) or too_long_to_align(h):
            out.append((0, 0))
            continue
        w = word_error_rate([r], [h], normaliser)
        out.append((w.substitutions + w.deletions + w.insertions, w.ref_words))
    return out


def _rate(errors: int, words: int) -> float:
    return 100.0 * errors / words if words else (0.0 if errors == 0 else math.inf)


def _sort_key(score: float) -> float:
    return -math.inf if math.isnan(score) else score  # an unscored label is least trusted


def retention_curve(
    name: str, scores: Sequence[float], errors: Sequence[tuple[int, int]], total: int | None = None
) -> ScoreCurve:
    """Label WER of the labels with score >= t, for every distinct score t.

    Args:
        name: the score's name.
        scores: one per label (NaN = unscored, kept only at threshold -inf).
        errors: (word errors, reference words) per label, aligned with ``scores``.
        total: the number retention is a fraction of (default: ``len(scores)``); give the
            full label count when these labels are the survivors of other rules.
    """
    if len(scores) != len(errors):
        raise ValueError(f"{len(scores)} scores but {len(errors)} error counts; they must pair up")
    total = total or len(scores)
    order = sorted(range(len(scores)), key=lambda i: _sort_key(scores[i]), reverse=True)
    points: list[CurvePoint] = []
    err = words = 0
    for rank, i in enumerate(order):
        err += errors[i][0]
        words += errors[i][1]
        here = _sort_key(scores[i])
        last = rank + 1 == len(order)
        if last or _sort_key(scores[order[rank + 1]]) != here:
            points.append(CurvePoint(here, rank + 1, (rank + 1) / total, _rate(err, words)))
    return ScoreCurve(name, tuple(points))


def choose_point(
    curve: ScoreCurve, target_wer: float | None = None, keep: float | None = None
) -> CurvePoint | None:
    """The point meeting the target on ``curve``.

    ``target_wer`` (%): the most labels whose WER is <= target (None if even the most
    selective threshold misses it). ``keep`` (fraction): the most selective threshold that
    keeps at least that fraction (the least selective point if none does).

    Raises:
        ValueError: unless exactly one of ``target_wer`` and ``keep`` is given.
    """
    if (target_wer is None) == (keep is None):
        raise ValueError("give exactly one of target_wer (label WER in %) or keep (a fraction)")
    if not curve.points:
        return None
    if target_wer is not None:
        ok = [p for p in curve.points if p.wer <= target_wer]
        return max(ok, key=lambda p: p.kept) if ok else None
    enough = [p for p in curve.points if p.retention >= keep - 1e-12]
    return enough[0] if enough else curve.points[-1]


def calibrate(
    score_table: Mapping[str, Sequence[float]],
    refs: Sequence[str],
    hyps: Sequence[str],
    *,
    target_wer: float | None = None,
    keep: float | None = None,
    score: str | None = None,
    normaliser: str = DEFAULT_NORMALISER,
    total: int | None = None,
) -> Calibration:
    """Curves for every score, and the threshold meeting ``target_wer`` or ``keep``.

    Args:
        score_table: score name -> one value per label (aligned with ``refs``/``hyps``).
        refs: reference transcripts of the labeled subset.
        hyps: the label texts as they would be kept (after correction).
        target_wer: label WER (%) to meet; the chosen threshold keeps the most labels.
        keep: retention to meet instead; the chosen threshold has the lowest WER.
        score: calibrate this score; None picks the best one for the target (most
            retention at ``target_wer``, or lowest WER at ``keep``).
        normaliser: WER normaliser, applied to both sides.
        total: the label count retention is a fraction of (default ``len(refs)``).

    Raises:
        ValueError: on an unknown ``score``, misaligned inputs, or no references.
    """
    if not refs:
        raise ValueError("calibration needs labels with reference transcripts (ref_text); none were given")
    if score is not None and score not in score_table:
        raise ValueError(f"score {score!r} was not computed; available: {', '.join(score_table)}")
    errors = utterance_errors(refs, hyps, normaliser)
    curves = tuple(retention_curve(name, vals, errors, total) for name, vals in score_table.items())
    chosen_by = {c.score: choose_point(c, target_wer, keep) for c in curves}
    if score is None:

        def merit(name: str) -> tuple:
            p = chosen_by[name]
            if p is None:
                return (0, 0.0, 0.0)
            return (1, p.kept, -p.wer) if target_wer is not None else (1, -p.wer, p.kept)

        score = max(chosen_by, key=merit)
    return Calibration(
        normaliser=normaliser,
        utterances=total or len(refs),
        scored=len(refs),
        wer_all=_rate(sum(e for e, _ in errors), sum(w for _, w in errors)),
        target_wer=target_wer,
        keep=keep,
        score=score,
        chosen=chosen_by[score],
        curves=curves,
    )


def _plot_curves(ax, cal: Calibration, bold: set[str], plt) -> None:
    """One line per score: those in ``bold`` thick and strongly coloured, the rest thin."""
    # Highlighted scores get the strong tab10 colours, one each; the rest pale tab20 and dashed.
    strong, pale = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    styles = ("--", "-.", ":")
    n_bold = n_thin = 0
    for curve in cal.curves:
        pts = [p for p in curve.points if math.isfinite(p.wer)]
        xs, ys = [p.retention for p in pts], [p.wer for p in pts]
        if curve.score in bold:
            ax.plot(xs, ys, color=strong(n_bold % 10), lw=2.6, label=curve.score, zorder=3)
            n_bold += 1
        else:
            ax.plot(
                xs,
                ys,
                color=pale((2 * n_thin + 1) % 20),
                ls=styles[n_thin % 3],
                lw=1.0,
                alpha=0.8,
                label=curve.score,
                zorder=2,
            )
            n_thin += 1


def _mark_choice(ax, cal: Calibration) -> None:
    """The unfiltered WER, the target, the asked retention and the chosen point."""
    ax.axhline(cal.wer_all, color="grey", ls=":", lw=1.2, label=f"unfiltered {cal.wer_all:.1f}%")
    if cal.target_wer is not None:
        ax.axhline(cal.target_wer, color="black", ls="--", lw=1, label=f"target {cal.target_wer:g}%")
    if cal.keep is not None:
        ax.axvline(cal.keep, color="black", ls="--", lw=1, label=f"keep {cal.keep:.2g}")
    if cal.chosen is not None:
        p = cal.chosen
        ax.plot(
            [p.retention],
            [p.wer],
            marker="*",
            ms=20,
            color="red",
            mec="black",
            ls="none",
            zorder=5,
            label=f"chosen: {cal.score} >= {p.threshold:.3g}\n(keep {p.retention:.0%}, WER {p.wer:.1f}%)",
        )


def plot_calibration(cal: Calibration, path: str | Path, highlight: Sequence[str] = ()) -> Path:
    """Retention (x) vs label WER (y), one line per score, the chosen point marked.

    Scores named in ``highlight`` (and the chosen one) are drawn thick; the rest thin,
    so twenty lines stay readable. Written atomically as PNG (matplotlib, Agg backend).
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'asr_distill[dev]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=120)
    _plot_curves(ax, cal, set(highlight) | {cal.score}, plt)
    _mark_choice(ax, cal)
    ax.set_xlabel("retention (fraction of labels kept, most confident first)")
    ax.set_ylabel(f"label WER, % ({cal.normaliser})")
    ax.set_title(f"Label WER vs retention per confidence score ({cal.scored} utterances with references)")
    ax.set_xlim(0, 1.01)
    # The first few labels give noisy WERs; three times the unfiltered WER keeps the useful range in view.
    top = 3 * cal.wer_all if cal.wer_all > 0 else None
    if top is not None and cal.target_wer is not None:
        top = max(top, 1.2 * cal.target_wer)
    ax.set_ylim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_calibration(cal: Calibration, json_path: str | Path, png_path: str | Path | None = None) -> None:
    """calibration.json (every curve, the choice) and, if asked, the plot."""
    from ..jsonl import atomic_write_text

    atomic_write_text(json_path, json.dumps(cal.to_dict(), indent=1) + "\n")
    if png_path is not None:
        plot_calibration(cal, png_path)


__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_ALIGN_CHARS",
    "MAX_ALIGN_WORDS",
    "Calibration",
    "CurvePoint",
    "ScoreCurve",
    "calibrate",
    "choose_point",
    "plot_calibration",
    "retention_curve",
    "too_long_to_align",
    "utterance_errors",
    "write_calibration",
]
