"""Iterative rounds (``rounds`` > 1): each student's labels join the vote that picks the next one's.

Round 1 is the run itself (label -> filter -> train -> export -> evaluate). Round ``k`` >= 2
lives in ``OUT/round<k>/`` (:class:`~.layout.RoundPaths`) and runs :data:`~.layout.ROUND_STAGES`:
round ``k - 1``'s student decodes the pool (``label_student``), the filter reruns on the
teacher's labels with every student's decoding as one more opinion, a new student trains
(on round 1's encoder-feature cache, which is keyed by audio), is exported and evaluated
beside the previous one, whose hypotheses are carried over rather than decoded again.

Each round's stages leave ``.done`` markers like the run's, so a killed run resumes inside
the round it was in; a round is redone when one before it changed. After each round
``OUT/rounds/rounds.json`` gets its figures (label WER, measured against references only;
retention; the student's WER per test set; the paired bootstrap against the previous
student) and the early-stop rule is read from them: the rounds end once
``rounds_patience`` rounds in a row have not lowered the dev WER (``rounds_dev``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_text
from ..quality.calibrate import finite_for_json
from .config import VALIDATION_DEV
from .layout import ROUND_STAGES, Paths, RoundPaths, clear_stale, finished, mark_done
from .stages import STAGE_FNS, StageFn, eval_models, label_pool

log = logging.getLogger(__name__)

FIRST_ROUND_STAGES = ("label", "filter", "review", "train", "export", "evaluate")


# --- one round's stages -------------------------------------------------------------------------


def _stage_label_student(rp: RoundPaths) -> dict[str, Any]:
    """The previous student decodes the pool in its own windows, as ``asr-distill label`` would."""
    from ..student.export import student_teacher

    model = rp.previous.student_pt
    _, options = student_teacher(model)
    options = dataclasses.replace(options, language=rp.cfg.label.options().language)
    stats = label_pool(rp, str(model), rp.student_labels, options, backend="whisper")
    return {
        "labels": str(rp.student_labels),
        "student": str(model),
        "decoded": stats.labeled,
        "skipped": stats.skipped,
        "rtfx": round(stats.rtfx, 2),
    }


def _stage_round_train(rp: RoundPaths) -> dict[str, Any]:
    """Round 1's training, with round 1's feature cache (the encoder and audio are the same)."""
    train = rp.cfg.train
    shared = {"data.cache_dir": str(rp.first.train_dir / "feature_cache")}
    cfg = dataclasses.replace(rp.cfg, train=dataclasses.replace(train, overrides=shared | train.overrides))
    return STAGE_FNS["train"](RoundPaths(cfg, rp.round_no))


def _stage_round_evaluate(rp: RoundPaths) -> dict[str, Any]:
    """Round 1's evaluation with the previous student beside the new one (:func:`~.stages.eval_models`)."""
    _carry_hypotheses(rp)
    return STAGE_FNS["evaluate"](rp)


def _carry_hypotheses(rp: RoundPaths) -> None:
    """Every model but the new student was decoded by the round before: copy its hypotheses over.

    The previous round's ``student`` becomes this round's ``round<k-1>``; evaluation then
    reuses what it finds (the speed figures are the saved run's).
    """
    from ..evaluate import IN_DOMAIN, load_transcription, model_folder, save_transcription, saved_inputs

    prev = rp.previous
    renamed = {f"round{prev.round_no}": "student"}
    for name, _ in eval_models(rp):
        if name == "student":
            continue
        for test_set in (IN_DOMAIN, *rp.cfg.evaluate.sets):
            dst = model_folder(rp.eval_dir, name, test_set)
            src = model_folder(prev.eval_dir, renamed.get(name, name), test_set)
            t = load_transcription(src)
            if t is not None and load_transcription(dst) is None:  # its inputs go with it
                save_transcription(dataclasses.replace(t, model=name), dst, saved_inputs(src))


ROUND_FNS: dict[str, StageFn] = {
    "label_student": _stage_label_student,
    "filter": STAGE_FNS["filter"],
    "train": _stage_round_train,
    "export": STAGE_FNS["export"],
    "evaluate": _stage_round_evaluate,
}


def _mtime_ns(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0


def _run_round(rp: RoundPaths, upstream_ns: int, changed: bool) -> tuple[int, bool]:
    """Run round ``k``'s stages that are not done; returns the newest input marker's time and ``changed``.

    A stage is redone from scratch (:func:`~.layout.clear_stale`) when an input changed: a
    stage before it ran in this call (``changed``) or finished after it. Evaluation is no
    input of the rounds after it.
    """
    for stage in ROUND_STAGES:
        marker = rp.done(stage)
        stale = changed or (marker.is_file() and _mtime_ns(marker) < upstream_ns)
        if finished(rp, stage) and not stale:
            log.info("round %d, stage %s: done before (%s), skipped", rp.round_no, stage, marker)
        else:
            marker.unlink(missing_ok=True)  # a kill from here on cannot look finished
            if stale:
                clear_stale(rp, stage)
            log.info("round %d, stage %s: running", rp.round_no, stage)
            started = time.perf_counter()
            notes = ROUND_FNS[stage](rp)
            seconds = time.perf_counter() - started
            mark_done(marker, seconds, {"stage": stage, "round": rp.round_no, **notes})
            log.info("round %d, stage %s: finished in %.1f s", rp.round_no, stage, seconds)
            changed = changed or stage != "evaluate"
        if stage != "evaluate":
            upstream_ns = max(upstream_ns, _mtime_ns(marker))
    return upstream_ns, changed


# --- the rounds stage ---------------------------------------------------------------------------


def run_rounds(p: Paths) -> dict[str, Any]:
    """The ``rounds`` stage: rounds 2..``rounds`` after the run's own, until the dev WER stops falling.

    Returns:
        The stage's note: rounds run, whether they stopped early, the best round on the dev set.
    """
    cfg = p.cfg
    rows = [round_row(p)]
    upstream_ns, changed, stop = _mtime_ns(p.done("export")), False, None
    for k in range(2, cfg.rounds + 1):
        stop = stop_reason(rows, cfg.rounds_patience, cfg.rounds_dev)
        if stop is not None:
            log.info("rounds: stopping before round %d: %s", k, stop)
            break
        rp = RoundPaths(cfg, k)
        upstream_ns, changed = _run_round(rp, upstream_ns, changed)
        rows.append(round_row(rp, rows))
        write_rounds(p, rows, None)  # so far: a killed run still shows the rounds it finished
    summary = write_rounds(p, rows, stop)
    return {"rounds": len(rows), "stopped_early": stop is not None, "best_round": summary["best_round"]}


def round_row(p: Paths, before: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One round's figures, read from the files its stages left.

    ``label_wer_*`` are measured against the pool's references (never used to choose);
    ``student_wer`` maps each evaluated set to the student's WER; ``p_vs_previous`` is the
    paired bootstrap's p-value of this student against the previous one on ``in_domain``
    (``delta_vs_previous`` in WER points, negative: better).
    """
    report = _read_json(p.filter_dir / "filter_report.json") or {}
    stages = FIRST_ROUND_STAGES if p.previous is None else ROUND_STAGES
    row: dict[str, Any] = {
        "round": p.round_no,
        "root": str(p.root),
        "label_wer_all": report.get("label_wer_all"),
        "label_wer_kept": report.get("label_wer_kept"),
        "retention": report.get("retention"),
        "kept": report.get("kept"),
        # the threshold applied: a retention floor (filter.keep_at_least) can lower the asked one
        "threshold": report.get("threshold"),
        "threshold_source": report.get("threshold_source"),
        **_student_figures(p),
        "seconds": round(sum(_done_seconds(p, s) for s in stages), 1),
    }
    row["dev_wer"] = _dev_wer(p, row)
    earlier = [r["dev_wer"] for r in before or [] if r.get("dev_wer") is not None]
    row["improved"] = None if row["dev_wer"] is None or not earlier else row["dev_wer"] < min(earlier)
    return row


def _student_figures(p: Paths) -> dict[str, Any]:
    from ..evaluate import IN_DOMAIN, load_suite

    out: dict[str, Any] = {"student_wer": {}, "p_vs_previous": None, "delta_vs_previous": None}
    if not (p.eval_dir / "summary.json").is_file():
        return out
    suite = load_suite(p.eval_dir)
    for name, ev in suite.sets.items():
        out["student_wer"][name] = next((r.wer for r in ev.results if r.model == "student"), None)
    previous = f"round{p.previous.round_no}" if p.previous is not None else None
    primary = suite.sets.get(IN_DOMAIN)
    for c in primary.comparisons if primary is not None else ():
        if c.a == "student" and c.b == previous:
            out["p_vs_previous"], out["delta_vs_previous"] = c.p_value, c.delta
    return out


def _dev_wer(p: Paths, row: dict[str, Any]) -> float | None:
    """The early-stop rule's figure: the student's WER on ``rounds_dev``, or its best ``val/wer``."""
    dev = p.cfg.rounds_dev
    if dev != VALIDATION_DEV:
        return row["student_wer"].get(dev)
    from ..report import find_metrics_csv, read_metrics_csv

    csv_path = find_metrics_csv(p.root)
    values = [v for _, v in read_metrics_csv(csv_path).get("val/wer", [])] if csv_path else []
    return min(values) if values else None


def stop_reason(rows: list[dict[str, Any]], patience: int, dev: str) -> str | None:
    """Why no further round should run, or None: the last ``patience`` rounds did not beat the best before.

    A round without a dev figure (its set was skipped) cannot be judged, so it never stops the run.
    """
    wers = [r.get("dev_wer") for r in rows]
    if len(wers) <= patience or any(w is None for w in wers):
        return None
    best_before = min(wers[:-patience])
    if min(wers[-patience:]) < best_before:
        return None
    return f"{patience} round(s) in a row did not lower the {dev} WER below {best_before:.2f}%"


def write_rounds(p: Paths, rows: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    """``OUT/rounds/rounds.json``: every round's row, the rule and why the rounds ended early (if so)."""
    cfg = p.cfg
    devs = [(r["dev_wer"], r["round"]) for r in rows if r.get("dev_wer") is not None]
    summary = {
        "requested": cfg.rounds,
        "ran": len(rows),
        "dev": cfg.rounds_dev,
        "patience": cfg.rounds_patience,
        "normaliser": cfg.evaluate.normaliser,
        "stopped_early": stop is not None,
        "stop_reason": stop,
        "best_round": min(devs)[1] if devs else None,
        "rounds": rows,
    }
    text = json.dumps(finite_for_json(summary), indent=1, allow_nan=False) + "\n"
    atomic_write_text(p.rounds_json, text)
    return summary


def _done_seconds(p: Paths, stage: str) -> float:
    note = _read_json(p.done(stage)) or {}
    return float(note.get("seconds", 0.0)) if isinstance(note, dict) else 0.0


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
