"""One adapter per stage, between the run's config and the library function that does the work.

Each reads the config and :class:`Paths`, calls the library, and returns a small note for
the stage's ``.done`` marker.

Heavy libraries (torch, whisper, Lightning) are imported inside the adapters, so reading
a config or planning a run stays fast.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..jsonl import atomic_write_text
from ..proc import tie_to_parent
from .config import MEMBER_SEED_STEP, ConfigError
from .datacard import write_data_card
from .layout import MEMBER_DONE, Paths, best_checkpoint, export_checkpoint, stage_seconds

if TYPE_CHECKING:
    from ..label import LabelStats
    from ..parallel import ParallelStats
    from ..teacher.options import LabelOptions

log = logging.getLogger(__name__)


# --- label ------------------------------------------------------------------------------------


def _stage_label(p: Paths) -> dict[str, Any]:
    cfg = p.cfg.label
    if cfg.labels:
        if not Path(cfg.labels).is_file():
            raise FileNotFoundError(f"label.labels: {cfg.labels} does not exist (merge the shards first)")
        notes: dict[str, Any] = {"labels": cfg.labels, "decoded": 0}
    else:
        stats = label_pool(p, cfg.teacher, p.labels, cfg.options(), pack=True)
        notes = {
            "labels": str(p.labels),
            "decoded": stats.labeled,
            "skipped": stats.skipped,
            "rtfx": round(stats.rtfx, 2),
        }
    if cfg.second and not cfg.second_labels:
        stats2 = label_pool(p, cfg.second, p.second, cfg.options(greedy=True), pack=True)
        notes["second"] = {"labels": str(p.second), "decoded": stats2.labeled, "rtfx": round(stats2.rtfx, 2)}
    for opinion, out in zip(cfg.opinions, p.opinion_labels, strict=True):
        stats3 = label_pool(p, opinion.model, out, cfg.opinion_options(opinion), pack=True, seed=opinion.seed)
        notes.setdefault("opinions", []).append(
            {"labels": str(out), "decoded": stats3.labeled, "rtfx": round(stats3.rtfx, 2)}
        )
    return notes


def label_pool(
    p: Paths,
    teacher: str,
    out: Path,
    options: LabelOptions,
    backend: str | None = None,
    pack: bool = False,
    seed: int | None = None,
) -> LabelStats | ParallelStats:
    """One model over the pool, as ``asr-distill label`` runs it with the same options.

    ``backend`` overrides ``label.backend`` (a student ``.pt`` decodes with openai-whisper's);
    ``pack`` applies ``label.pack_s`` (the label stage's models; a round's student decodes
    each utterance alone); ``seed`` overrides ``label.seed`` (an opinion sampled at a temperature).
    """
    import dataclasses

    from ..label_job import label_job

    cfg = p.cfg.label
    run = (dataclasses.replace(cfg, backend=backend) if backend else cfg).run(teacher, options, seed)
    return label_job(p.cfg.data.train, out, run, cfg.placement(), pack_s=cfg.pack_s if pack else None)


# --- filter and review --------------------------------------------------------------------------


def _stage_filter(p: Paths) -> dict[str, Any]:
    from ..quality.stage import run_filter

    result = run_filter(p.labels, p.filter_dir, p.cfg.filter, second=p.opinions)
    r = result.report
    return {
        "kept": r.kept,
        "dropped": r.dropped,
        "retention": round(r.retention, 4),
        "label_wer_all": r.label_wer_all,
        "label_wer_kept": r.label_wer_kept,
    }


def _stage_review(p: Paths) -> dict[str, Any]:
    from ..quality.stage import run_review_export, run_review_import

    cfg = p.cfg.review
    if not p.cfg.filter.enabled:
        raise ConfigError("review.enabled needs filter.enabled: review works on the filter's pseudo-labels")
    exported = run_review_export(p.filtered, p.review_dir, cfg)
    notes: dict[str, Any] = {"page": str(exported.html), "items": exported.items}
    if cfg.edits:
        r = run_review_import(p.filtered, Path(cfg.edits), p.review_dir, cfg)
        notes |= {"applied": str(cfg.edits), "kept": len(r.kept), "dropped": len(r.dropped)}
    else:
        log.info(
            "review page written to %s; training goes on with the filter's labels until "
            "review.edits names the reviewer's decisions",
            exported.html,
        )
    return notes


# --- train, export, evaluate, report ------------------------------------------------------------


def _stage_train(p: Paths) -> dict[str, Any]:
    """Train the student, or each member of a soup (``train.members``), each resumable on its own."""
    from ..student.config import student_config

    members = p.member_dirs
    cache = None
    for i, root in enumerate(members):
        cfg = student_config(
            p.cfg.train.config, root, p.training_manifest, p.cfg.label.teacher, p.cfg.train.overrides
        )
        cache = cache or cfg["data"]["cache_dir"]
        if len(members) == 1:
            _train(cfg, p.train_yaml, p.cfg.train.launcher)
        elif not (root / MEMBER_DONE).is_file():  # a finished member is not resumed into more epochs
            _train(member_config(cfg, i, cache), root / "student.yaml", p.cfg.train.launcher)
            atomic_write_text(root / MEMBER_DONE, "")
    notes = {"checkpoint": str(best_checkpoint(p.checkpoints)), "config": str(p.train_yaml)}
    return notes | ({"members": [str(d) for d in members]} if len(members) > 1 else {})


def member_config(cfg: dict[str, Any], i: int, cache_dir: str) -> dict[str, Any]:
    """Soup member ``i``'s student config: its own seeds, the first member's feature cache.

    Both seeds move: ``seed_everything`` and ``data.seed`` (batch order and augmented copies,
    which decide most of how two runs differ; with only the first, two members can come out
    the same).
    """

    def moved(seed: Any) -> int:
        return (seed if isinstance(seed, int) and not isinstance(seed, bool) else 0) + MEMBER_SEED_STEP * i

    data = {**cfg["data"], "cache_dir": cache_dir, "seed": moved(cfg["data"].get("seed"))}
    return {**cfg, "seed_everything": moved(cfg.get("seed_everything")), "data": data}


def _train(cfg: dict[str, Any], yaml_path: Path, launcher: list[str]) -> None:
    """One training in a process of its own, from the config written to ``yaml_path``."""
    import yaml

    atomic_write_text(yaml_path, yaml.safe_dump(cfg, sort_keys=False))
    cmd = [
        *launcher,
        sys.executable,
        "-m",
        "asr_distill.cli",
        "train",
        "--config",
        str(yaml_path),
    ]
    log_path = yaml_path.parent / "train.log"
    log.info("training: %s (log: %s)", shlex.join(cmd), log_path)
    # A process of its own: Lightning's global state and threads end with it, and a
    # crash leaves its checkpoints for the rerun to resume from.
    with open(log_path, "a", encoding="utf-8") as logf:
        rc = subprocess.run(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            preexec_fn=functools.partial(tie_to_parent, os.getpid()),
        ).returncode
    if rc != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"training failed (exit {rc}); see {log_path}; last lines:\n{tail}")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _stage_export(p: Paths) -> dict[str, Any]:
    from ..student.export import export_ct2, export_whisper_pt, load_student_soup, tokenizer_ct2_dir

    ckpts = [export_checkpoint(d / "checkpoints", p.cfg.export.checkpoint) for d in p.member_dirs]
    ckpt = ckpts[0]
    module = load_student_soup(ckpts, wise_alpha=p.cfg.export.wise_alpha)
    judged = module.hparams.get("val_wise_alpha", 1.0)
    if p.cfg.export.checkpoint == "best" and judged != p.cfg.export.wise_alpha:
        log.warning(
            "export.wise_alpha is %.2f, but the best checkpoint was chosen validating the %.2f mix "
            "(model.val_wise_alpha): set them equal to ship the model that was judged",
            p.cfg.export.wise_alpha,
            judged,
        )
    desc = module.describe() | {"exported_from": str(ckpt.resolve())}
    out = export_whisper_pt(module.model, p.student_pt, desc, half=p.cfg.export.half)
    notes: dict[str, Any] = {"student": str(out), "checkpoint": str(ckpt), "wise_alpha": module.wise_alpha}
    if len(ckpts) > 1:
        notes["soup_of"] = [str(c) for c in ckpts]
    if p.cfg.export.ct2:
        side = tokenizer_ct2_dir(module)
        if side is None:
            raise ValueError(
                "export.ct2: the student's tokenizer source has no CTranslate2 folder "
                "to copy tokenizer.json from"
            )
        notes["ct2"] = str(export_ct2(module.model, p.export_dir / "ct2", side, desc))
    return notes


def eval_models(p: Paths) -> list[tuple[str, str]]:
    """(name, model) pairs to evaluate: the teacher first, then the config's, the student last.

    From round 2 on, the previous round's student (``round<k-1>``) stands just before it,
    so the paired bootstrap says whether the round helped.
    """
    models = [("teacher", p.cfg.label.teacher)]
    models += [(k, v) for k, v in p.cfg.evaluate.models.items() if k not in ("teacher", "student")]
    if p.cfg.train.enabled and p.cfg.export.enabled:
        if p.previous is not None:
            models.append((f"round{p.previous.round_no}", str(p.previous.student_pt)))
        models.append(("student", str(p.student_pt)))
    return models


def _stage_evaluate(p: Paths) -> dict[str, Any]:
    """Every model on ``data.test`` (in_domain) and each set of ``evaluate.sets``; absent ones skipped."""
    from ..evaluate import IN_DOMAIN, evaluate

    cfg = p.cfg.evaluate
    sets = {IN_DOMAIN: p.cfg.data.test, **cfg.sets}
    suite = evaluate(
        eval_models(p),
        sets,
        p.eval_dir,
        scoring=cfg.scoring(),
        decoding=cfg.decoding(),
        baselines=cfg.baselines,
    )
    notes: dict[str, Any] = {
        name: {r.model: {"wer": round(r.wer, 3), "rtfx": r.rtfx, "params": r.params} for r in ev.results}
        for name, ev in suite.sets.items()
    }
    return notes | {
        "skipped_sets": suite.skipped,
        "regressions": [f"{r.model} worse than {r.baseline} on {r.set}" for r in suite.regressions],
    }


def _stage_report(p: Paths) -> dict[str, Any]:
    from ..report import write_report

    write_data_card(p)
    report = write_report(p.root, stage_seconds(p.root))
    return {"report": str(report)}


StageFn = Callable[[Paths], dict[str, Any]]
STAGE_FNS: dict[str, StageFn] = {
    "label": _stage_label,
    "filter": _stage_filter,
    "review": _stage_review,
    "train": _stage_train,
    "export": _stage_export,
    "evaluate": _stage_evaluate,
    "report": _stage_report,
}
