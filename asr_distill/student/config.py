"""The student's LightningCLI config, placed in a run folder.

A base YAML (``recipes/*/student.yaml``) holds the model and trainer settings; a run
points the data, feature cache, logs and checkpoints into its own folder, names its labels
and teacher, and applies dotted overrides last. The pipeline's train stage and the fault
campaign write their training configs with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def student_config(
    base_yaml: str | Path,
    root: Path,
    train_manifest: Path,
    teacher: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``base_yaml`` read and placed with :func:`place_student_config`.

    The labeling teacher wins over the YAML's ``model.teacher`` (with a warning): the
    student must learn the tokenizer and outputs of the model that made its labels.
    """
    import yaml

    base = yaml.safe_load(Path(base_yaml).read_text(encoding="utf-8")) or {}
    named = (base.get("model") or {}).get("teacher", teacher)
    if named != teacher:
        log.warning(
            "student config's model.teacher %r differs from label.teacher %r; using the labeler's",
            named,
            teacher,
        )
    return place_student_config(base, root, train_manifest, teacher, overrides)


def place_student_config(
    base: Mapping[str, Any],
    root: Path,
    train_manifest: Path,
    teacher: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A student config with every path under ``root``, the given labels and teacher.

    The run folder, checkpoints, logs and feature cache all go under ``root``; dotted
    ``overrides`` are applied last.
    """
    cfg = dict(base)
    cfg["model"] = {**(cfg.get("model") or {}), "teacher": teacher}
    cfg["data"] = {
        **(cfg.get("data") or {}),
        "train_manifest": str(train_manifest),
        "cache_dir": str(root / "feature_cache"),
    }
    trainer = dict(cfg.get("trainer") or {})
    trainer["default_root_dir"] = str(root)
    logger = trainer.get("logger")
    if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
        trainer["logger"] = {**logger, "init_args": {**logger["init_args"], "save_dir": str(root)}}
    callbacks = []
    for cb in trainer.get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            cb = {**cb, "init_args": {**(cb.get("init_args") or {}), "dirpath": str(root / "checkpoints")}}
        callbacks.append(cb)
    if callbacks:
        trainer["callbacks"] = callbacks
    cfg["trainer"] = trainer
    for key, value in (overrides or {}).items():
        _set_dotted(cfg, key, value)
    return cfg


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
