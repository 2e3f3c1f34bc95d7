"""The whole pipeline as one resumable call, under one output root.

The stages: label -> filter (+ correct) -> review -> train -> export -> evaluate -> report.
``run(config)`` takes a YAML file, a dict or a :class:`PipelineConfig`. Each stage writes
its outputs into ``ROOT/<stage>/`` and then, atomically, ``ROOT/<stage>/.done`` (a JSON
note of when it finished and what it made). A rerun skips every stage whose marker exists,
so a killed run resumes where it stopped; within a stage, labeling resumes per batch and
training from ``last.ckpt``. When a stage does run again (its marker was deleted, or its
outputs), every later stage runs again too, because its inputs may have changed.

Export comes before evaluation: the student is measured as it is shipped, through the same
loader users call (``load_teacher(student.pt)``).

Modules: ``config`` (the typed config and its checks), ``layout`` (where files go, the
``.done`` markers), ``stages`` (one adapter per stage), ``datacard`` (what the student
learned from) and ``runner`` (:func:`plan` and :func:`run`).
"""

from .config import (
    ConfigError,
    DataConfig,
    EvaluateConfig,
    ExportConfig,
    FilterStageConfig,
    LabelConfig,
    PipelineConfig,
    ReviewConfig,
    Source,
    TrainConfig,
    config_from_dict,
    load_config,
)
from .datacard import KNOWN_LICENCES, data_card, format_data_card, write_data_card
from .layout import DONE, STAGES, Paths, best_checkpoint, stage_outputs, stage_seconds
from .runner import RunResult, StageStatus, plan, run
from .stages import eval_models

__all__ = [
    "DONE",
    "KNOWN_LICENCES",
    "STAGES",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FilterStageConfig",
    "LabelConfig",
    "Paths",
    "PipelineConfig",
    "ReviewConfig",
    "RunResult",
    "Source",
    "StageStatus",
    "TrainConfig",
    "best_checkpoint",
    "config_from_dict",
    "data_card",
    "eval_models",
    "format_data_card",
    "load_config",
    "plan",
    "run",
    "stage_outputs",
    "stage_seconds",
    "write_data_card",
]
