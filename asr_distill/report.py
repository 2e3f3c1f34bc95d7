"""``report.md`` for a run: the tables and plots a researcher reads first.

It reads only files the stages leave behind, so it works on a finished, a partial or a
copied run folder: ``eval/summary.json`` (models compared), ``filter/filter_report.json``
and ``filter/calibration.json`` (label quality vs retention), Lightning's ``metrics.csv``
under ``train/`` (training and validation curves) and ``data_card.json``. Each missing
input only removes its section. The seconds each stage took come from the caller
(``pipeline.stage_seconds`` reads them from the ``.done`` notes), so this module needs
nothing of the pipeline that calls it.

Plots are PNG, drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .jsonl import atomic_write_text

log = logging.getLogger(__name__)

REPORT_DIR = "report"
REPORT_NAME = "report.md"
WER_RTFX_PNG = "wer_vs_rtfx.png"
RETENTION_PNG = "label_wer_vs_retention.png"
CURVES_PNG = "training_curves.png"
ROUNDS_JSON = Path("rounds") / "rounds.json"
DPI = 120
MAX_SPEAKER_ROWS = 40  # longer per-speaker tables go to the summary JSON only
MAX_RETENTION_LINES = 8  # the chosen score plus the best others, so the plot stays readable


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'asr_distill[dev]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save a figure atomically (a killed run never leaves half a PNG)."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    tmp.replace(path)
    return path


# --- plots ------------------------------------------------------------------------------------


def plot_wer_vs_rtfx(results: Sequence[Any], path: Path) -> Path:
    """Each model as a point: RTFx (x, log scale) vs WER (y) with its bootstrap CI.

    Marker area grows with the parameter count. Better models sit bottom right.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    biggest = max(r.params for r in results) or 1
    for k, r in enumerate(results):
        color = plt.get_cmap("tab10")(k % 10)
        err = [[max(r.wer - r.ci.low, 0.0)], [max(r.ci.high - r.wer, 0.0)]]
        ax.errorbar([r.rtfx], [r.wer], yerr=err, fmt="none", ecolor=color, capsize=4, lw=1.2)
        ax.scatter(
            [r.rtfx],
            [r.wer],
            s=60 + 400 * r.params / biggest,
            color=color,
            edgecolor="black",
            zorder=3,
            label=f"{r.model} ({r.params / 1e6:.1f}M params)",
        )
        ax.annotate(r.model, (r.rtfx, r.wer), textcoords="offset points", xytext=(8, 6), fontsize=9)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("RTFx (audio seconds per wall second, higher is faster)")
    ax.set_ylabel(f"WER % ({results[0].normaliser}), 95% CI")
    ax.set_title("Accuracy vs speed")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best", markerscale=0.5)
    fig.tight_layout()
    return _save(fig, path)


def _curve_points(curve: dict) -> tuple[list[float], list[float]]:
    pts = [p for p in curve.get("points", []) if p.get("wer") is not None and math.isfinite(p["wer"])]
    return [p["retention"] for p in pts], [p["wer"] for p in pts]


def _wer_at_full(curve: dict) -> float:
    xs, ys = _curve_points(curve)
    # area under the curve over retention: lower means the score sorts bad labels out better
    if len(xs) < 2:
        return math.inf
    order = sorted(zip(xs, ys, strict=True))
    return sum((b[0] - a[0]) * a[1] for a, b in zip(order, order[1:], strict=False))


def plot_label_wer_vs_retention(calibration: dict, path: Path) -> Path:
    """Label WER (y) against the fraction kept (x), from the filter stage's ``calibration.json``.

    Shows the chosen score, starring the chosen point, and the best few others.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    chosen_score = calibration.get("score")
    curves = sorted(calibration.get("curves", []), key=_wer_at_full)
    shown = [c for c in curves if c["score"] == chosen_score]
    shown += [c for c in curves if c["score"] != chosen_score][: MAX_RETENTION_LINES - len(shown)]
    for k, c in enumerate(shown):
        xs, ys = _curve_points(c)
        thick = c["score"] == chosen_score
        ax.step(
            xs,
            ys,
            where="post",
            lw=2.4 if thick else 1.0,
            color=plt.get_cmap("tab10")(k % 10),
            label=c["score"] + (" (used)" if thick else ""),
        )
    if calibration.get("wer_all") is not None:
        ax.axhline(
            calibration["wer_all"],
            color="grey",
            ls=":",
            lw=1,
            label=f"unfiltered {calibration['wer_all']:.1f}%",
        )
    chosen = calibration.get("chosen")
    if chosen:
        ax.plot(
            [chosen["retention"]],
            [chosen["wer"]],
            marker="*",
            ms=16,
            color="red",
            mec="black",
            zorder=5,
            label=f"chosen: keep {chosen['retention']:.0%}, WER {chosen['wer']:.1f}%",
        )
    ax.set_xlabel("retention (fraction of labels kept)")
    ax.set_ylabel(f"label WER % ({calibration.get('normaliser', '?')})")
    ax.set_title(f"Label WER vs retention ({calibration.get('scored', '?')} labels with references)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


def find_metrics_csv(run: Path) -> Path | None:
    """Lightning's CSVLogger file under the run (the newest, if a run was restarted)."""
    found = sorted(
        (run / "train").rglob("metrics.csv") if (run / "train").is_dir() else [],
        key=lambda x: x.stat().st_mtime,
    )
    if not found:
        found = sorted(run.rglob("metrics.csv"), key=lambda x: x.stat().st_mtime)
    return found[-1] if found else None


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Column -> [(step, value)] for every numeric metric column of a CSVLogger file."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                step = float(row.get("step") or "nan")
            except ValueError:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key, []).append((step, v))
    return series


def plot_training_curves(series: dict[str, list[tuple[float, float]]], path: Path) -> Path | None:
    """Losses (left) and WER-like metrics (right) against the optimizer step.

    Training series are thin lines, validation series have markers.
    """
    losses = {k: v for k, v in series.items() if "loss" in k.lower()}
    wers = {k: v for k, v in series.items() if "wer" in k.lower() or "cer" in k.lower()}
    if not losses and not wers:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, group, title in ((axes[0], losses, "loss"), (axes[1], wers, "WER %")):
        for name, pts in sorted(group.items()):
            xs, ys = zip(*sorted(pts), strict=True)
            is_val = name.lower().startswith("val")
            ax.plot(xs, ys, marker="o" if is_val else None, ms=4, lw=1.6 if is_val else 0.9, label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
    axes[1].set_ylim(bottom=0)
    axes[0].set_title("Training and validation loss")
    axes[1].set_title("Validation WER")
    fig.tight_layout()
    return _save(fig, path)


# --- report -----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _eval_dir(run: Path) -> Path | None:
    for d in (run / "eval", run):
        if (d / "summary.json").is_file():
            return d
    return None


def _eval_section(run: Path, out: Path, plots: list[str]) -> list[str]:
    """The evaluation's section, when the run holds one (``eval/summary.json``)."""
    from .evaluate import load_suite

    d = _eval_dir(run)
    return [] if d is None else _suite_section(load_suite(d), d, out, plots)


def _suite_section(suite: Any, d: Path, out: Path, plots: list[str]) -> list[str]:
    """Every model on every test set, regressions, then the in-domain set in detail."""
    body = _eval_intro(suite) + _eval_sets(suite) + _eval_detail(suite.primary, out, plots)
    for name, ev in list(suite.sets.items())[1:]:
        body += _eval_set_tables(f"### {name}: `{ev.manifest}`", ev)
    where = f"`{d}/<model>/alignment.txt` (in-domain; `<model>@<set>/` for the others)"
    return body + [f"Per-utterance alignments: {where}, worst first, and `alignment.jsonl`.", ""]


def _eval_intro(suite: Any) -> list[str]:
    sets = ", ".join(f"{name} (`{ev.manifest}`)" for name, ev in suite.sets.items())
    return [
        "## Models on the test sets",
        "",
        f"Test sets: {sets}. Every WER uses the `{suite.primary.normaliser}` normaliser on both sides; "
        "every model decodes with the same loop-guarded search. CI: bootstrap over utterances. "
        "ins %: inserted words per 100 reference words (loops and hallucinations show there "
        "first). RTFx: audio seconds per wall second of decoding (model loading excluded), on "
        "this machine.",
        "",
    ]


def _eval_sets(suite: Any) -> list[str]:
    from .evaluate import format_regressions, format_sets

    lines = []
    if len(suite.sets) > 1 or suite.skipped:
        lines += ["### Every model on every test set", "", format_sets(suite), ""]
    regressions = format_regressions(suite.regressions, checked=bool(suite.baselines))
    return lines + ([regressions, ""] if regressions else [])


def _eval_set_tables(title: str, ev: Any) -> list[str]:
    from .evaluate import format_comparisons, format_table

    lines = [title, "", format_table(ev.results), ""]
    if ev.comparisons:
        lines += [
            "Paired bootstrap (same utterances, same resamples):",
            "",
            format_comparisons(ev.comparisons),
            "",
        ]
    return lines


def _eval_detail(ev: Any, out: Path, plots: list[str]) -> list[str]:
    """The in-domain set: its tables, the accuracy-speed plot, WER by duration and by speaker."""
    from .evaluate import format_breakdown

    lines = _eval_set_tables("### In domain", ev)
    png = plot_wer_vs_rtfx(ev.results, out / WER_RTFX_PNG)
    plots.append(png.name)
    lines += [f"![WER vs RTFx]({png.name})", ""]
    lines += ["### WER by utterance duration", "", _bucket_table(ev.results), ""]
    for r in ev.results:
        if len(r.per_speaker) > 1 and len(r.per_speaker) <= MAX_SPEAKER_ROWS:
            lines += [f"### WER by speaker: {r.model}", "", format_breakdown(r.per_speaker, "speaker"), ""]
    return lines


def _bucket_table(results: Sequence[Any]) -> str:
    buckets: list[str] = []
    for r in results:
        for g in r.per_duration:
            if g.name not in buckets:
                buckets.append(g.name)
    head = "| duration | utts | " + " | ".join(f"{r.model} WER %" for r in results) + " |"
    rows = [head, "|" + "---|" * (2 + len(results))]
    for b in buckets:
        cells, n = [], 0
        for r in results:
            g = next((g for g in r.per_duration if g.name == b), None)
            cells.append("-" if g is None else f"{g.wer:.2f}")
            n = max(n, g.utterances if g else 0)
        rows.append(f"| {b} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _filter_section(run: Path, out: Path, plots: list[str]) -> list[str]:
    report = _read_json(run / "filter" / "filter_report.json")
    if not report:
        return []
    lines = [
        "## Pseudo-label filter",
        "",
        f"Kept {report['kept']} of {report['utterances']} labels ({report['retention']:.1%}; "
        f"{report['kept_hours']:.3f} of {report['hours']:.3f} h) with `{report['score']}` "
        f">= {report['threshold']} (threshold from: {report['threshold_source']}"
        + (
            "; no references, so the score's documented default"
            if report["threshold_source"] == "default"
            else ""
        )
        + ").",
        "",
    ]
    if report.get("by_reason"):
        lines += ["| dropped for | utterances | hours |", "|---|---|---|"]
        lines += [f"| {k} | {v['utterances']} | {v['hours']:.4f} |" for k, v in report["by_reason"].items()]
        lines.append("")
    if report.get("corrections"):
        lines += [
            "Corrections applied: "
            + ", ".join(f"{k} {v}" for k, v in report["corrections"].items())
            + f" (normaliser `{report['normaliser']}`).",
            "",
        ]
    if report.get("label_wer_all") is not None:
        kept = report.get("label_wer_kept")
        lines += [
            f"Label WER against the pool's references ({report['wer_normaliser']}; measured, never "
            f"used to choose labels unless the threshold came from calibration): all "
            f"{report['label_wer_all']:.2f}%, "
            f"kept {'-' if kept is None else f'{kept:.2f}%'}.",
            "",
        ]
    lines += [
        f"Review load: {report.get('review_load_min_per_h', 0):.1f} min of audio per hour kept for the "
        f"{report.get('review_fraction', 0):.0%} least-confident labels.",
        "",
    ]
    cal = _read_json(run / "filter" / "calibration.json")
    if cal and cal.get("curves"):
        png = plot_label_wer_vs_retention(cal, out / RETENTION_PNG)
        plots.append(png.name)
        lines += [f"![label WER vs retention]({png.name})", ""]
    return lines


def _training_section(run: Path, out: Path, plots: list[str]) -> list[str]:
    csv_path = find_metrics_csv(run)
    if csv_path is None:
        return []
    series = read_metrics_csv(csv_path)
    lines = ["## Student training", "", f"Logged by Lightning's CSVLogger: `{csv_path}`.", ""]
    finals = []
    for name, pts in sorted(series.items()):
        if name.lower().startswith("val"):
            best = min(v for _, v in pts) if "wer" in name.lower() or "loss" in name.lower() else pts[-1][1]
            finals.append(f"{name}: last {pts[-1][1]:.4g}, best {best:.4g} ({len(pts)} evaluations)")
    if finals:
        lines += ["- " + f for f in finals] + [""]
    png = plot_training_curves(series, out / CURVES_PNG)
    if png is not None:
        plots.append(png.name)
        lines += [f"![training curves]({png.name})", ""]
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _round_cells(r: Mapping[str, Any], sets: Sequence[str]) -> list[str]:
    """One round's table cells (WER in percent; the comparison with the round before, in points)."""
    p = r.get("p_vs_previous")
    vs = "-" if p is None else f"{r['delta_vs_previous']:+.2f}, p={p:.3f}"
    retention = "-" if r.get("retention") is None else f"{r['retention']:.1%}"
    threshold = "-" if r.get("threshold") is None else f"{r['threshold']:g}"
    cells = [
        str(r["round"]),
        _pct(r.get("label_wer_all")),
        _pct(r.get("label_wer_kept")),
        retention,
        threshold,
    ]
    cells += [_pct((r.get("student_wer") or {}).get(name)) for name in sets]
    return cells + [vs, _pct(r.get("dev_wer")), f"{r.get('seconds') or 0:.0f}"]


def _rounds_section(run: Path) -> list[str]:
    """Iterative rounds side by side, from ``rounds/rounds.json`` (written by the pipeline's rounds stage)."""
    summary = _read_json(run / ROUNDS_JSON)
    if not summary or not summary.get("rounds"):
        return []
    rows = summary["rounds"]
    sets = list(dict.fromkeys(name for r in rows for name in r.get("student_wer") or {}))
    head = ["round", "label WER all %", "label WER kept %", "retention", "threshold"]
    head += [f"student WER {name} %" for name in sets] + ["vs previous (points, p)", "dev WER %", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_round_cells(r, sets)) + " |" for r in rows]
    ended = (
        f"Stopped early after round {summary['ran']} of {summary['requested']}: {summary['stop_reason']}."
        if summary.get("stopped_early")
        else f"Ran {summary['ran']} of {summary['requested']} rounds."
    )
    return [
        "## Iterative rounds",
        "",
        "Each round after the first: the previous student decodes the pool, its labels join the "
        "filter's vote, a new student trains on the teacher's labels the filter keeps. Label WER is "
        "measured against the pool's references only (they choose nothing); student WER "
        f"({summary.get('normaliser')}) per test set; 'vs previous': the paired bootstrap of the "
        f"student against the round before it on in_domain. Dev set for stopping: "
        f"`{summary.get('dev')}` (patience {summary.get('patience')}).",
        "",
        *lines,
        "",
        f"{ended} Best on the dev set: round {summary.get('best_round')}.",
        "",
    ]


def _stages_section(seconds: Mapping[str, float]) -> list[str]:
    if not seconds:
        return []
    rows = ["## Stages", "", "| stage | seconds |", "|---|---|"]
    rows += [f"| {stage} | {s:.1f} |" for stage, s in seconds.items()]
    return rows + [""]


def report_inputs(run_dir: str | Path) -> list[Path]:
    """The files :func:`write_report` reads from ``run_dir`` (for the output guard: none is overwritten)."""
    run = Path(run_dir)
    found = [run / "filter" / "filter_report.json", run / "filter" / "calibration.json", run / "data_card.md"]
    found.append(run / ROUNDS_JSON)
    d = _eval_dir(run)
    found += [d / "summary.json"] if d is not None else []
    csv_path = find_metrics_csv(run)
    return [p for p in found if p.is_file()] + ([csv_path] if csv_path is not None else [])


def write_report(run_dir: str | Path, stage_seconds: Mapping[str, float] | None = None) -> Path:
    """Write ``RUN/report/report.md`` and its PNG plots; returns the report's path.

    Args:
        run_dir: the run's output root (or a folder holding ``eval/summary.json``).
        stage_seconds: seconds per stage, in pipeline order, for the Stages table
            (``pipeline.stage_seconds(run_dir)``); None or empty: no such table.

    Raises:
        FileNotFoundError: when the folder holds nothing to report on.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a folder (give the output root of a run)")
    out = run / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    body: list[str] = []
    body += _eval_section(run, out, plots)
    body += _rounds_section(run)
    body += _filter_section(run, out, plots)
    body += _training_section(run, out, plots)
    card = run / "data_card.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8").split("\n", 1)[1].strip()
        body += ["## Data card", "", text.replace("## ", "### "), ""]
    body += _stages_section(stage_seconds or {})
    if not body:
        raise FileNotFoundError(f"{run} holds no eval/summary.json, filter report, training log or data card")
    title = [f"# Report: {run.name}", ""]
    path = out / REPORT_NAME
    atomic_write_text(path, "\n".join(title + body))
    log.info("wrote %s with %d plots", path, len(plots))
    return path


__all__ = [
    "find_metrics_csv",
    "plot_label_wer_vs_retention",
    "plot_training_curves",
    "plot_wer_vs_rtfx",
    "read_metrics_csv",
    "report_inputs",
    "write_report",
]
