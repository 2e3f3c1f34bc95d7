"""Where a run keeps its files: one folder per stage under the output root.

Each folder gets a ``.done`` note once its outputs are complete (when, how long, what it made,
and a digest of the settings it ran with: :func:`stage_settings`).
Round 1 of an iterative run is the run itself; round ``k`` >= 2 is a small run root of its
own, ``OUT/round<k>/``, holding :data:`ROUND_STAGES` (:class:`RoundPaths`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evaluate.artefacts import SUMMARY_NAME, TABLE_NAME
from ..jsonl import atomic_write_text

if TYPE_CHECKING:
    from .config import PipelineConfig

log = logging.getLogger(__name__)

DONE = ".done"
MEMBER_DONE = ".trained"  # in a soup member's folder once its training ended (see ``stages``)
STAGES = ("label", "filter", "review", "train", "export", "evaluate", "rounds", "report")
# What each round >= 2 does, in OUT/round<k>/: the previous student labels the pool, then as round 1.
ROUND_STAGES = ("label_student", "filter", "train", "export", "evaluate")


class Paths:
    """Every file the pipeline reads or writes, by name, under one root."""

    round_no = 1

    def __init__(self, cfg: PipelineConfig, root: Path | None = None):
        self.cfg = cfg
        self.root = Path(cfg.out) if root is None else root
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
    def opinion_labels(self) -> list[Path]:
        """Each of ``label.opinions``' decodings of the pool, in the config's order."""
        return [
            self.label_dir / f"opinion{i}_{o.stem()}.jsonl" for i, o in enumerate(self.cfg.label.opinions)
        ]

    @property
    def opinions(self) -> Path | list[Path] | None:
        """What the filter weighs the teacher's labels against: the second model's, then the opinions'."""
        if not self.cfg.label.opinions:
            return self.second
        return ([self.second] if self.second is not None else []) + self.opinion_labels

    @property
    def previous(self) -> Paths | None:
        """The round before this one (None: this is round 1)."""
        return None

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
    def member_dirs(self) -> list[Path]:
        """Each trained student's folder: ``train/``, then ``train/member<i>/`` (``train.members``)."""
        return [self.train_dir] + [self.train_dir / f"member{i}" for i in range(1, self.cfg.train.members)]

    @property
    def student_pt(self) -> Path:
        """The exported student, the file evaluation measures."""
        return self.export_dir / "student.pt"

    @property
    def train_yaml(self) -> Path:
        """The student config the pipeline wrote for this run."""
        return self.train_dir / "student.yaml"

    @property
    def rounds_json(self) -> Path:
        """Each round's figures side by side, and why the rounds stopped (``rounds`` stage)."""
        return self.root / "rounds" / "rounds.json"


class RoundPaths(Paths):
    """Round ``k`` >= 2 of an iterative run, under ``OUT/round<k>``.

    The pool's teacher labels (and the second model's) are round 1's: every round filters
    the same labels. What changes is the vote: round ``k``'s ``label_student/labels.jsonl``
    (the pool decoded by round ``k - 1``'s student) joins the opinions of the rounds before.
    """

    def __init__(self, cfg: PipelineConfig, k: int):
        if k < 2:
            raise ValueError(f"round {k}: round 1 is the run root itself (Paths)")
        super().__init__(cfg, Path(cfg.out) / f"round{k}")
        self.round_no = k
        self.first = Paths(cfg)
        self.label_dir = self.root / "label_student"

    @property
    def labels(self) -> Path:
        """Round 1's teacher labels."""
        return self.first.labels

    @property
    def second(self) -> Path | None:
        """Round 1's second-model labels."""
        return self.first.second

    @property
    def student_labels(self) -> Path:
        """The pool as the previous round's student decoded it."""
        return self.label_dir / "labels.jsonl"

    @property
    def opinion_labels(self) -> list[Path]:
        """Round 1's decodings of ``label.opinions``."""
        return self.first.opinion_labels

    @property
    def opinions(self) -> list[Path]:
        """The second model's labels first (pairwise scores read it), round 1's opinions, each student's."""
        students = [RoundPaths(self.cfg, j).student_labels for j in range(2, self.round_no + 1)]
        return ([self.second] if self.second is not None else []) + self.opinion_labels + students

    @property
    def previous(self) -> Paths:
        """Round ``k - 1``: its student labels the pool for this round."""
        return self.first if self.round_no == 2 else RoundPaths(self.cfg, self.round_no - 1)


def round_paths(cfg: PipelineConfig, k: int) -> Paths:
    """Round ``k``'s files: the run root for round 1, ``OUT/round<k>`` after it."""
    return Paths(cfg) if k == 1 else RoundPaths(cfg, k)


def stage_outputs(p: Paths, stage: str) -> list[Path]:
    """The files a finished stage must have left; a marker without them does not count."""
    return {
        "label": [p.labels] + ([p.second] if p.second is not None else []) + p.opinion_labels,
        "label_student": [p.label_dir / "labels.jsonl"],
        "filter": [p.filter_dir / "kept.jsonl", p.filter_dir / "filter_report.json"],
        "review": [p.review_dir / "kept.jsonl"] if p.cfg.review.edits else [],
        "train": [d / "checkpoints" for d in p.member_dirs],
        "export": [p.student_pt],
        "evaluate": [p.eval_dir / SUMMARY_NAME],
        "rounds": [p.rounds_json],
        "report": [p.report_dir / "report.md"],
    }[stage]


def finished(p: Paths, stage: str) -> bool:
    """Whether the stage's marker and every output it must leave exist."""
    return p.done(stage).is_file() and all(x.exists() for x in stage_outputs(p, stage))


def clear_stale(p: Paths, stage: str) -> None:
    """Remove what a stage resumes from, once an earlier stage made new inputs (or on ``force``).

    Without this, training would "resume" a finished run on old labels, evaluation would
    reuse an old student's hypotheses and a student's labels would be kept from the student
    before. Outputs that are simply overwritten (filter, export, report) and the
    encoder-feature cache (keyed by audio, not labels) are kept; the review folder is never
    touched, since it may hold a person's edits. The rounds after round 1 go whole.
    Evaluation loses its summary and table but keeps each model's saved decoding: a decoding
    is reused only for the same manifest bytes, model files and options (its ``inputs``), so
    a new student is decoded again while the teacher and the baselines are not.
    """
    doomed: list[Path] = []
    if stage == "train":
        logs = ("metrics.csv", "hparams.yaml", "logs")
        members = sorted(p.train_dir.glob("member[0-9]*"))  # every earlier soup member, however many
        doomed = [p.checkpoints, p.train_dir / MEMBER_DONE, *(p.train_dir / name for name in logs), *members]
    elif stage == "evaluate":
        doomed = [p.eval_dir / SUMMARY_NAME, p.eval_dir / TABLE_NAME]
    elif stage == "label_student":
        doomed = [p.label_dir]
    elif stage == "rounds":
        doomed = [p.rounds_json.parent, *sorted(p.root.glob("round[0-9]*"))]
    for path in doomed:
        if path.is_dir():
            log.info("%s: inputs changed, removing %s", stage, path)
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# Keys that change how a stage runs, not what it writes: a change of these alone reruns nothing.
_OPERATIONAL = frozenset({"progress", "threads", "workers", "device", "labels", "second_labels"})
# Keys added after runs were made, left out of the digest at their default: those runs stay finished.
_ADDED_DEFAULTS = {"members": 1, "pad": None}


def stage_settings(cfg: PipelineConfig, stage: str) -> str:
    """A digest of the settings ``stage`` reads, stored in its ``.done`` note.

    A finished stage whose settings changed since (a new threshold, another export mix, a
    training config edited) runs again, and every later stage with it. Each stage digests only
    its own section (upstream changes reach it through the rerun of the stage before); the
    training config file counts by its parsed content, so editing a comment reruns nothing.
    Labels named in ``label.labels`` are where labels come from, not how they are made.
    """
    import yaml

    def plain(section: Any) -> Any:
        d = dataclasses.asdict(section) if dataclasses.is_dataclass(section) else section
        if not isinstance(d, dict):
            return d
        return {
            k: v
            for k, v in d.items()
            if k not in _OPERATIONAL and not (k in _ADDED_DEFAULTS and v == _ADDED_DEFAULTS[k])
        }

    settings: dict[str, Any] = {
        "label": {"pool": cfg.data.train, "label": plain(cfg.label)},
        "filter": {"filter": plain(cfg.filter)},
        "review": {"review": plain(cfg.review)},
        "train": {"train": plain(cfg.train)},
        "export": {"export": plain(cfg.export)},
        "evaluate": {"test": cfg.data.test, "evaluate": plain(cfg.evaluate)},
        "rounds": {"rounds": [cfg.rounds, cfg.rounds_patience, cfg.rounds_dev]},
        "report": {},
    }[stage]
    if stage == "train" and cfg.train.config and Path(cfg.train.config).is_file():
        settings["train_config"] = yaml.safe_load(Path(cfg.train.config).read_text(encoding="utf-8"))
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def settings_changed(p: Paths, stage: str) -> bool:
    """Whether ``stage``'s ``.done`` note names other settings than the config's now.

    A note without a digest (written before digests existed) is trusted as it is.
    """
    try:
        saved = json.loads(p.done(stage).read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError, AttributeError):
        return False
    return saved is not None and saved != stage_settings(p.cfg, stage)


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


def export_checkpoint(ckpt_dir: Path, which: str = "best") -> Path:
    """The checkpoint to export: ``best`` (see :func:`best_checkpoint`) or ``last`` (``last.ckpt``).

    Raises:
        FileNotFoundError: ``last`` without a ``last.ckpt``, or no checkpoint at all.
    """
    if which == "last":
        last = ckpt_dir / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(f"export.checkpoint is last, but {ckpt_dir} holds no last.ckpt")
        return last
    return best_checkpoint(ckpt_dir)


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
