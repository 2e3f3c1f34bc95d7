"""The whole pipeline as one resumable call, under one output root.

The stages: label -> filter (+ correct) -> review -> train -> export -> evaluate -> report.
``run(config)`` takes a YAML file, a dict or a :class:`PipelineConfig`. Each stage writes
its outputs into ``ROOT/<stage>/`` and then, atomically, ``ROOT/<stage>/.done`` (a JSON
note of when it finished and what it made). A rerun skips every stage whose marker exists,
so a killed run resumes where it stopped; within a stage, labeling resumes per batch and
training from ``last.ckpt``. When a stage does run again (its marker was deleted, or its
outputs), every later stage runs again too, because its inputs may have changed.

With ``rounds: N`` (N > 1) a ``rounds`` stage follows evaluation: each round's student
labels the pool, its labels join the filter's vote, and a new student trains, in
``ROOT/round<k>/`` (:mod:`.rounds`), until the dev WER stops falling.

Export comes before evaluation: the student is measured as it is shipped, through the same
loader users call (``load_teacher(student.pt)``).

Modules: ``config`` (the typed config and its checks), ``layout`` (where files go, the
``.done`` markers), ``stages`` (one adapter per stage), ``rounds`` (iterating),
``datacard`` (what the student learned from) and ``runner`` (:func:`plan` and :func:`run`).
"""

from .config import (
    ConfigError,
    DataConfig,
    EvaluateConfig,
    ExportConfig,
    FilterStageConfig,
    LabelConfig,
    Opinion,
    PipelineConfig,
    ReviewConfig,
    Source,
    TrainConfig,
    config_from_dict,
    load_config,
)
from .datacard import KNOWN_LICENCES, data_card, format_data_card, write_data_card
from .layout import (
    DONE,
    ROUND_STAGES,
    STAGES,
    Paths,
    RoundPaths,
    best_checkpoint,
    stage_outputs,
    stage_seconds,
)
from .rounds import run_rounds, stop_reason
from .runner import RunResult, StageStatus, plan, run
from .stages import eval_models

__all__ = [
    "DONE",
    "KNOWN_LICENCES",
    "ROUND_STAGES",
    "STAGES",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FilterStageConfig",
    "LabelConfig",
    "Opinion",
    "Paths",
    "PipelineConfig",
    "ReviewConfig",
    "RoundPaths",
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
    "run_rounds",
    "stage_outputs",
    "stage_seconds",
    "stop_reason",
    "write_data_card",
]
