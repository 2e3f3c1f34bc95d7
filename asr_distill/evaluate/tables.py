"""Markdown tables of evaluation results: models, paired comparisons, per-group WERs."""

from __future__ import annotations

from collections.abc import Sequence

from ..records import SIGNIFICANCE, GroupWer, ModelResult, PairedComparison, WerResult
from .sets import EvaluationSuite, Regression

REGRESSION_MARK = "REGRESSION"


def format_params(n: int) -> str:
    """A parameter count in millions (``39.0M``)."""
    return f"{n / 1e6:.1f}M"


def insertion_rate(score: WerResult) -> float:
    """Inserted words per 100 reference words: where a loop or a hallucination shows first."""
    return 100.0 * score.insertions / max(score.ref_words, 1)


def format_table(results: Sequence[ModelResult]) -> str:
    """A markdown table: one row per model with WER (CI), CER, S/D/I, insertion rate, RTFx, parameters."""
    if not results:
        return ""
    norm = results[0].normaliser
    others = sorted({k for r in results for k in r.other_wer})
    head = (
        ["model", f"WER % ({norm})", f"{int(results[0].ci.level * 100)}% CI", "CER %", "S/D/I", "ins %"]
        + [f"WER % ({o})" for o in others]
        + ["RTFx", "params", "utts"]
    )
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        s = r.score
        cells = [
            r.model,
            f"{s.wer:.2f}",
            f"{r.ci.low:.2f}-{r.ci.high:.2f}",
            f"{s.cer:.2f}",
            f"{s.substitutions}/{s.deletions}/{s.insertions}",
            f"{insertion_rate(s):.2f}",
        ]
        cells += [f"{r.other_wer[o]:.2f}" if o in r.other_wer else "-" for o in others]
        cells += [f"{r.rtfx:.1f}", format_params(r.params), str(s.utterances)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_comparisons(comparisons: Sequence[PairedComparison]) -> str:
    """A markdown table of paired bootstrap results."""
    if not comparisons:
        return ""
    rows = [
        "| A | B | WER A | WER B | A - B (95% CI) | p (A not better) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        if c.a_better:
            verdict = f"{c.a} better"
        elif c.delta > 0 and 1.0 - c.p_value < SIGNIFICANCE:
            verdict = f"{c.b} better"
        else:
            verdict = "no significant difference"
        rows.append(
            f"| {c.a} | {c.b} | {c.wer_a:.2f} | {c.wer_b:.2f} | {c.delta:+.2f} "
            f"({c.delta_ci.low:+.2f}, {c.delta_ci.high:+.2f}) | {c.p_value:.3f} | {verdict} |"
        )
    return "\n".join(rows)


def format_sets(suite: EvaluationSuite) -> str:
    """Models (rows) by test sets (columns): WER [CI] and insertion rate, regressions marked."""
    flagged = {(r.set, r.model) for r in suite.regressions}
    models = list(dict.fromkeys(r.model for ev in suite.sets.values() for r in ev.results))
    level = int(suite.primary.results[0].ci.level * 100) if suite.primary.results else 95
    head = ["model"] + [f"{s} WER % [{level}% CI] / ins %" for s in suite.sets]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        cells = [m]
        for set_name, ev in suite.sets.items():
            r = next((r for r in ev.results if r.model == m), None)
            cell = (
                "-"
                if r is None
                else f"{r.wer:.2f} [{r.ci.low:.2f}, {r.ci.high:.2f}] / {insertion_rate(r.score):.2f}"
            )
            cells.append(cell + (f" **{REGRESSION_MARK}**" if (set_name, m) in flagged else ""))
        rows.append("| " + " | ".join(cells) + " |")
    notes = [f"{name}: skipped ({why})" for name, why in suite.skipped.items()]
    notes += [f"{m} started from {b}" for m, b in suite.baselines.items()]
    return "\n".join(rows + ([""] + ["- " + n for n in notes] if notes else []))


def format_regressions(regressions: Sequence[Regression], checked: bool = True) -> str:
    """One line per regression; a line saying there are none when baselines were checked."""
    if not regressions:
        return (
            "No regressions: no model is significantly worse than the one it started from." if checked else ""
        )
    lines = [
        f"- **{REGRESSION_MARK}** on {r.set}: {r.model} {r.wer:.2f}% vs {r.baseline} "
        f"{r.baseline_wer:.2f}% WER "
        f"({r.delta:+.2f} points, {int(r.delta_ci.level * 100)}% CI {r.delta_ci.low:+.2f} to "
        f"{r.delta_ci.high:+.2f}; p = {r.p_value:.3f} that {r.baseline} is not better)"
        for r in regressions
    ]
    return "\n".join(lines)


def format_breakdown(groups: Sequence[GroupWer], title: str) -> str:
    """A markdown table of per-group WERs (speakers or duration buckets)."""
    rows = [f"| {title} | utts | words | WER % | audio min |", "|---|---|---|---|---|"]
    for g in groups:
        rows.append(f"| {g.name} | {g.utterances} | {g.ref_words} | {g.wer:.2f} | {g.audio_s / 60:.1f} |")
    return "\n".join(rows)


__all__ = [
    "REGRESSION_MARK",
    "format_breakdown",
    "format_comparisons",
    "format_params",
    "format_regressions",
    "format_sets",
    "format_table",
    "insertion_rate",
]
