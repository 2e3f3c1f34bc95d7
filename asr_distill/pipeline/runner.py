"""The runner: which stages to run, in order, skipping those finished before.

A stage is done when its ``.done`` marker and its outputs exist, its settings are those it
ran with (:func:`~.layout.stage_settings`) and no earlier stage finished after it; a stage
that runs makes every later one run again. The ``rounds``
stage exists only in a config with ``rounds`` > 1 (:mod:`.rounds`); a one-round run lists
the stages it always had.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..jsonl import atomic_write_text
from ..outputs import guard_output
from . import preflight
from .config import ConfigError, PipelineConfig, config_from_dict, load_config
from .layout import STAGES, Paths, clear_stale, finished, mark_done, settings_changed, stage_settings
from .rounds import run_rounds
from .stages import STAGE_FNS, StageFn

FNS: dict[str, StageFn] = {**STAGE_FNS, "rounds": run_rounds}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageStatus:
    """What happened to one stage in this call.

    ``status`` is ``ran``, ``skipped`` (already done) or ``disabled`` (switched off in the config).
    """

    name: str
    status: str
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class RunResult:
    """A finished run: its root, what each stage did, and where the report is."""

    root: str
    stages: tuple[StageStatus, ...]
    report: str | None = None
    table: str | None = None


def _enabled(cfg: PipelineConfig, stage: str) -> bool:
    return {
        "label": True,
        "filter": cfg.filter.enabled,
        "review": cfg.review.enabled,
        "train": cfg.train.enabled,
        "export": cfg.train.enabled and cfg.export.enabled,
        "evaluate": cfg.evaluate.enabled,
        "rounds": cfg.rounds > 1,
        "report": True,
    }[stage]


def _listed(cfg: PipelineConfig, stage: str) -> bool:
    """Whether the run has this stage at all: ``rounds`` only when it iterates."""
    return stage != "rounds" or cfg.rounds > 1


def _stage_range(start: str | None, stop: str | None) -> list[str]:
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    a = STAGES.index(start) if start else 0
    b = STAGES.index(stop) if stop else len(STAGES) - 1
    return list(STAGES[a : b + 1])


def _as_config(config: str | os.PathLike | Mapping[str, Any] | PipelineConfig) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    return load_config(config)


def _newer_upstream(p: Paths, stage: str) -> str | None:
    """The name of an enabled earlier stage that finished after ``stage`` did, if any."""
    marker = p.done(stage)
    if not marker.is_file():
        return None
    mine = marker.stat().st_mtime_ns
    for up in STAGES[: STAGES.index(stage)]:
        m = p.done(up)
        if _enabled(p.cfg, up) and m.is_file() and m.stat().st_mtime_ns > mine:
            return up
    return None


def plan(config: str | os.PathLike | Mapping[str, Any] | PipelineConfig) -> list[tuple[str, str]]:
    """What :func:`run` would do to each stage, without doing it, as ``(stage, why)`` pairs.

    ``why`` is ``done``, ``disabled``, ``not done``, ``outputs missing`` (marker without its
    files) or ``stale: ...`` (its settings changed, an earlier stage is newer, or will run).
    """
    cfg = _as_config(config)
    p = Paths(cfg)
    out, rerun = [], False
    for stage in (s for s in STAGES if _listed(cfg, s)):
        if not _enabled(cfg, stage):
            out.append((stage, "disabled"))
            continue
        newer = _newer_upstream(p, stage)
        if not p.done(stage).is_file():
            why = "not done"
        elif settings_changed(p, stage):  # first, as ``run`` judges it: a rerun from scratch
            why = "stale: its settings changed"
        elif not finished(p, stage):
            why = "outputs missing"
        elif newer is not None:
            why = f"stale: {newer} is newer"
        elif rerun:
            why = "stale: an earlier stage will run"
        else:
            why = "done"
        rerun = rerun or why != "done"
        out.append((stage, why))
    return out


def check(cfg: PipelineConfig, stages: list[str]) -> None:
    """Raise :class:`ConfigError` listing every missing input and unresolvable model of these stages."""
    found = preflight.problems(cfg, stages)
    if found:
        raise ConfigError("the config names what is not there:\n" + "\n".join(f"  {x}" for x in found))


def run(
    config: str | os.PathLike | Mapping[str, Any] | PipelineConfig,
    *,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
) -> RunResult:
    """Run the pipeline, skipping stages that have finished before.

    A stage is skipped when its ``.done`` marker and its outputs exist and no earlier
    stage finished after it (markers are compared by time, so this holds across separate calls, e.g.
    a recipe that runs one stage per call). A stage that runs after an earlier one ran
    first drops what it would resume from (old checkpoints, old hypotheses).

    Args:
        config: a YAML path, a mapping, or a :class:`PipelineConfig`.
        start: the first stage to run (a name in :data:`STAGES`); earlier stages must have
            finished.
        stop: the last stage to run.
        force: run the selected stages even when their ``.done`` marker exists, and write
            into an existing output root that holds files a run did not write.

    Returns:
        A :class:`RunResult` saying which stages ran and which were skipped.

    Raises:
        ConfigError: for a bad config, or one naming inputs or models that are not there
            (:mod:`.preflight`, for the stages that will run), before any work starts.
        UnsafeOutputError: the output root holds files a run did not write (see ``force``),
            or is a file; before anything is written.
        OutputLockedError: another run writes the same root.
        RuntimeError: when a stage fails; its marker is not written, so a rerun retries it.
    """
    cfg = _as_config(config)
    selected = _stage_range(start, stop)
    to_run = [s for s, why in plan(cfg) if s in selected and why != "disabled" and (force or why != "done")]
    check(cfg, to_run)
    p = Paths(cfg)
    inputs = [x for x in (cfg.data.train, cfg.data.test, cfg.label.labels, *cfg.evaluate.sets.values()) if x]
    with guard_output(p.root, inputs=inputs, kind="run_dir", force=force):
        return _run_locked(cfg, p, start, stop, force)


def _run_locked(cfg: PipelineConfig, p: Paths, start: str | None, stop: str | None, force: bool) -> RunResult:
    atomic_write_text(p.root / "pipeline_config.json", json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    selected = _stage_range(start, stop)
    for stage in STAGES[: STAGES.index(selected[0])]:
        if _enabled(cfg, stage) and not p.done(stage).is_file():
            raise RuntimeError(
                f"stage {stage} has not finished ({p.done(stage)} missing); run from an earlier stage"
            )
    statuses: list[StageStatus] = []
    upstream_ran = False
    for stage in (s for s in selected if _listed(cfg, s)):
        if not _enabled(cfg, stage):
            statuses.append(StageStatus(stage, "disabled"))
            continue
        marker = p.done(stage)
        newer = _newer_upstream(p, stage)
        done = finished(p, stage)
        # a marker naming other settings is stale even where outputs are missing (more soup
        # members asked of a finished training): rerun from scratch, not as a resume
        changed = marker.is_file() and settings_changed(p, stage)
        if done and not (force or upstream_ran or changed) and newer is None:
            log.info("stage %s: done before (%s), skipped", stage, marker)
            statuses.append(StageStatus(stage, "skipped"))
            continue
        if marker.is_file():
            marker.unlink()  # rerun: forget the old marker first, so a kill now cannot look finished
        if force or upstream_ran or changed or newer is not None:
            clear_stale(p, stage)  # forced: from scratch, not a resume of the old run
        why = f" ({newer} is newer)" if newer else " (its settings changed)" if changed else ""
        log.info("stage %s: running%s", stage, why)
        started = time.perf_counter()
        notes = FNS[stage](p)
        seconds = time.perf_counter() - started
        mark_done(marker, seconds, {"stage": stage, "settings": stage_settings(cfg, stage), **notes})
        log.info("stage %s: finished in %.1f s", stage, seconds)
        statuses.append(StageStatus(stage, "ran", round(seconds, 2)))
        upstream_ran = True
    report = p.report_dir / "report.md"
    table = p.eval_dir / "table.md"
    return RunResult(
        str(p.root),
        tuple(statuses),
        str(report) if report.is_file() else None,
        table.read_text() if table.is_file() else None,
    )
