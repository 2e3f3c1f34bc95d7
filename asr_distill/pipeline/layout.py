"""Where a run keeps its files: one folder per stage under the output root.

Each folder gets a ``.done`` note once its outputs are complete (when, how long, what it made).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..jsonl import atomic_write_text

if TYPE_CHECKING:
    from .config import PipelineConfig

DONE = ".done"
STAGES = ("label", "filter", "review", "train", "export", "evaluate", "report")


class Paths:
    """Every file the pipeline reads or writes, by name, under one root."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.label_dir = self.root / "label"
        self.filter_dir = self.root / "filter"
        self.review_dir = self.root / "review"
        self.train_dir = self.root / "train"
        self.export_dir = self.root / "export"
        self.eval_dir = self.root / "eval"
        self.report_dir = self.root / "report"

    def stage_dir(self, stage: str) -> Path:
        """The stage's own folder under the root."""
        return self.root / stage

    def done(self, stage: str) -> Path:
        """The stage's ``.done`` marker."""
        return self.stage_dir(stage) / DONE

    @property
    def labels(self) -> Path:
        """The teacher's labels: made elsewhere when the config names them, else by the label stage."""
        return Path(self.cfg.label.labels) if self.cfg.label.labels else self.label_dir / "labels.jsonl"

    @property
    def second(self) -> Path | None:
        """The second model's labels, when there is a second model."""
        if self.cfg.label.second_labels:
            return Path(self.cfg.label.second_labels)
        return self.label_dir / "second.jsonl" if self.cfg.label.second else None

    @property
    def filtered(self) -> Path:
        """The labels the filter kept."""
        return self.filter_dir / "kept.jsonl"

    @property
    def training_manifest(self) -> Path:
        """The labels the student learns: reviewed, else filtered, else the teacher's."""
        reviewed = self.review_dir / "kept.jsonl"
        if self.cfg.review.enabled and reviewed.is_file():
            return reviewed
        return self.filtered if self.cfg.filter.enabled else self.labels

    @property
    def checkpoints(self) -> Path:
        """Lightning's checkpoint folder for the student."""
        return self.train_dir / "checkpoints"

    @property
    def student_pt(self) -> Path:
        """The exported student, the file evaluation measures."""
        return self.export_dir / "student.pt"

    @property
    def train_yaml(self) -> Path:
        """The student config the pipeline wrote for this run."""
        return self.train_dir / "student.yaml"


def stage_outputs(p: Paths, stage: str) -> list[Path]:
    """The files a finished stage must have left; a marker without them does not count."""
    return {
        "label": [p.labels] + ([p.second] if p.second is not None else []),
        "filter": [p.filter_dir / "kept.jsonl", p.filter_dir / "filter_report.json"],
        "review": [p.review_dir / "kept.jsonl"] if p.cfg.review.edits else [],
        "train": [p.checkpoints],
        "export": [p.student_pt],
        "evaluate": [p.eval_dir / "summary.json"],
        "report": [p.report_dir / "report.md"],
    }[stage]


def mark_done(path: Path, seconds: float, note: dict[str, Any]) -> None:
    """Write a stage's ``.done`` note (atomically: a kill never leaves half a marker)."""
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"finished": finished, "seconds": round(seconds, 2), **note}
    atomic_write_text(path, json.dumps(body, indent=1) + "\n")


def stage_seconds(root: str | Path) -> dict[str, float]:
    """Seconds each finished stage took, from its ``.done`` note (for reports)."""
    out = {}
    for stage in STAGES:
        d = Path(root) / stage / DONE
        if d.is_file():
            try:
                out[stage] = float(json.loads(d.read_text()).get("seconds", 0.0))
            except (ValueError, AttributeError):
                continue
    return out


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The checkpoint Lightning's ModelCheckpoint judged best, else the latest.

    The best is ``last.ckpt``'s ``best_model_path``; without one, ``last.ckpt`` itself, and
    without ``last.ckpt``, the newest checkpoint.

    ``last.ckpt`` is read with ``safe_load.load_checkpoint``: a crafted file is refused
    without running anything.

    Raises:
        FileNotFoundError: the folder holds no checkpoint.
        CheckpointError: ``last.ckpt`` is unreadable, or would run code (``UnsafeCheckpointError``).
    """
    from ..safe_load import load_checkpoint

    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        found = sorted(ckpt_dir.glob("*.ckpt"), key=lambda x: x.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: did training run?")
        return found[-1]
    state = load_checkpoint(last)
    callbacks = state.get("callbacks") if isinstance(state, dict) else None
    for key, value in (callbacks if isinstance(callbacks, dict) else {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(value, dict):
            best = value.get("best_model_path")
            if best and Path(best).is_file():
                return Path(best)
    return last
