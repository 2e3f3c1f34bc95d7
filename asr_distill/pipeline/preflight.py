"""Before a run: every input a stage about to run will read exists, and every model it names resolves.

Loading the config checks its shape; this checks the world it points at. Without it a typo in
``evaluate.models`` or a missing test manifest surfaces after hours of labeling and training.
Every problem is listed at once, and nothing is loaded: models are resolved by name and path
only (:func:`~asr_distill.evaluate.decoding.model_problem`, which knows every kind a stage
takes). Files the run itself writes (under its output root: a round's student, an exported
checkpoint) are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .config import PipelineConfig


def _made_by_run(cfg: PipelineConfig, value: str) -> bool:
    return Path(value).is_relative_to(cfg.out)


def _input(cfg: PipelineConfig, key: str, value: str | None) -> list[str]:
    if value is None or _made_by_run(cfg, value) or Path(value).exists():
        return []
    return [f"{key}: {value} does not exist"]


def _model(cfg: PipelineConfig, key: str, value: str | None) -> list[str]:
    # evaluation's check: it also knows ONNX folders and GGML files (a teacher is one of them too)
    from ..evaluate.decoding import model_problem

    if value is None or _made_by_run(cfg, value):
        return []
    problem = model_problem(value)
    return [f"{key}: {problem}"] if problem else []


def _label(cfg: PipelineConfig) -> list[str]:
    label = cfg.label
    if label.labels is not None:  # labels made elsewhere: nothing is decoded
        return _input(cfg, "label.labels", label.labels) + _input(
            cfg, "label.second_labels", label.second_labels
        )
    found = _input(cfg, "data.train", cfg.data.train) + _model(cfg, "label.teacher", label.teacher)
    if label.second_labels is None:
        found += _model(cfg, "label.second", label.second)
    for i, opinion in enumerate(label.opinions):
        found += _model(cfg, f"label.opinions[{i}].model", opinion.model)
    return found


def _evaluate(cfg: PipelineConfig) -> list[str]:
    found = _input(cfg, "data.test", cfg.data.test) + _model(cfg, "label.teacher", cfg.label.teacher)
    for name, model in cfg.evaluate.models.items():
        found += _model(cfg, f"evaluate.models.{name}", model)
    return found  # an absent evaluate.sets entry is skipped with its reason, by design


CHECKS = {
    "label": _label,
    "filter": lambda cfg: _input(cfg, "filter.lexicon", cfg.filter.lexicon),
    "review": lambda cfg: (
        _input(cfg, "review.edits", cfg.review.edits)
        + _input(cfg, "review.calibrate_on", cfg.review.calibrate_on)
    ),
    "train": lambda cfg: _input(cfg, "train.config", cfg.train.config),
    "evaluate": _evaluate,
}


def problems(cfg: PipelineConfig, stages: Iterable[str]) -> list[str]:
    """What would stop these stages, each said once, in stage order."""
    found: list[str] = []
    for stage in stages:
        found += [x for x in CHECKS.get(stage, lambda _: [])(cfg) if x not in found]
    return found
