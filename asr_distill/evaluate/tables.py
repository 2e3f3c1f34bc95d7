"""Markdown tables of evaluation results: models, paired comparisons, per-group WERs."""

from __future__ import annotations

from collections.abc import Sequence

from ..records import SIGNIFICANCE, GroupWer, ModelResult, PairedComparison


def format_params(n: int) -> str:
    """A parameter count in millions (``39.0M``)."""
    return f"{n / 1e6:.1f}M"


def format_table(results: Sequence[ModelResult]) -> str:
    """A markdown table: one row per model with WER (CI), CER, S/D/I, RTFx, parameters."""
    if not results:
        return ""
    norm = results[0].normaliser
    others = sorted({k for r in results for k in r.other_wer})
    head = (
        ["model", f"WER % ({norm})", f"{int(results[0].ci.level * 100)}% CI", "CER %", "S/D/I"]
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


def format_breakdown(groups: Sequence[GroupWer], title: str) -> str:
    """A markdown table of per-group WERs (speakers or duration buckets)."""
    rows = [f"| {title} | utts | words | WER % | audio min |", "|---|---|---|---|---|"]
    for g in groups:
        rows.append(f"| {g.name} | {g.utterances} | {g.ref_words} | {g.wer:.2f} | {g.audio_s / 60:.1f} |")
    return "\n".join(rows)


__all__ = ["format_breakdown", "format_comparisons", "format_params", "format_table"]
