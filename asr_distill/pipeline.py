"""The whole pipeline as one resumable call: label -> filter (+ correct) -> review -> train ->
export -> evaluate -> report, under one output root.

``run(config)`` takes a YAML file, a dict or a :class:`PipelineConfig`. Each stage writes
its outputs into ``ROOT/<stage>/`` and then, atomically, ``ROOT/<stage>/.done`` (a JSON
note of when it finished and what it made). A rerun skips every stage whose marker exists,
so a killed run resumes where it stopped; within a stage, labeling resumes per batch and
training from ``last.ckpt``. When a stage does run again (its marker was deleted, or its
outputs), every later stage runs again too, because its inputs may have changed.

Export comes before evaluation: the student is measured as it is shipped, through the same
loader users call (``load_teacher(student.pt)``).

The config is checked before any work starts: an unknown key or a value of the wrong type
fails with the key's full name (``filter.keep: expected a number, got 'lots'``).
Relative paths in a config file are read against the file's own folder; ``{out}`` in a
path stands for the output root.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jsonl import OutputNotWritableError, atomic_write_jsonl, atomic_write_text, exclusive_lock, read_jsonl
from .proc import tie_to_parent

log = logging.getLogger(__name__)

DONE = ".done"
STAGES = ("label", "filter", "review", "train", "export", "evaluate", "report")
# Licences of the models and data this toolkit ships or names, for the data card.
KNOWN_LICENCES: dict[str, str] = {
    "base": "MIT (OpenAI Whisper)",
    "tiny.en": "MIT (OpenAI Whisper)",
    "tiny": "MIT (OpenAI Whisper)",
    "small": "MIT (OpenAI Whisper)",
    "medium": "MIT (OpenAI Whisper)",
    "large-v3": "MIT (OpenAI Whisper)",
}
WHISPER_LICENCE = "MIT (OpenAI Whisper)"


class ConfigError(ValueError):
    """A pipeline config that cannot run: the message names the key and what is wrong."""


# --- config -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where audio came from, for the data card."""

    name: str
    licence: str | None = None
    url: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """``train``: the unlabeled pool (NeMo manifest; its ``text``, if any, is used only to
    measure label quality). ``test``: the evaluation manifest, with references."""

    train: str
    test: str | None = None
    sources: list[Source] = field(default_factory=list)


@dataclass(frozen=True)
class LabelConfig:
    """The teacher, an optional second model (its agreement is the strongest confidence
    score), and decoding settings. ``labels`` names labels made elsewhere (e.g. a SLURM
    array, merged): the stage then decodes nothing."""

    teacher: str = "base"
    second: str | None = "tiny.en"
    batch_size: int = 8
    beam_size: int | None = None
    backend: str = "whisper"
    labels: str | None = None
    second_labels: str | None = None


@dataclass(frozen=True)
class FilterStageConfig:
    """Filter and light correction (see :mod:`asr_distill.filter`); at most one of
    ``threshold``, ``keep``, ``target_wer``; none: the score's documented default."""

    enabled: bool = True
    score: str | None = None
    threshold: float | None = None
    keep: float | None = None
    target_wer: float | None = None
    lexicon: str | None = None
    lexicon_similarity: float | None = None
    normaliser: str = "spoken_form"
    language: str | None = "en"
    min_agreement: float | None = None
    review_fraction: float = 0.1


@dataclass(frozen=True)
class ReviewConfig:
    """Human review. Enabled without ``edits``: the page is exported and training goes on
    with the filter's labels; with ``edits`` (the page's JSON or the edited TSV) they are
    applied and training uses the reviewed labels."""

    enabled: bool = False
    k: int | None = None
    edits: str | None = None
    reviewer: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """``config``: the student's LightningCLI YAML; the pipeline points its data, cache,
    logs and checkpoints into the run root. ``overrides``: dotted keys applied last
    (``{"trainer.max_epochs": 3}``). ``launcher``: a command the training process is
    started under, e.g. ``[srun]`` inside a SLURM job with one task per GPU, so Lightning
    runs DDP across them."""

    enabled: bool = True
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EvaluateConfig:
    """Models compared on ``data.test`` beside the student (name -> model; ``teacher``
    defaults to the labeling teacher)."""

    enabled: bool = True
    models: dict[str, str] = field(default_factory=lambda: {"tiny.en": "tiny.en"})
    normaliser: str = "format_insensitive"
    also: list[str] = field(default_factory=lambda: ["whisper_en"])
    batch_size: int = 8
    resamples: int = 1000
    device: str = "auto"


@dataclass(frozen=True)
class ExportConfig:
    enabled: bool = True
    ct2: bool = False
    half: bool = False


@dataclass(frozen=True)
class PipelineConfig:
    """One run: where it writes, what it reads, and each stage's settings."""

    out: str
    data: DataConfig
    name: str = "run"
    label: LabelConfig = field(default_factory=LabelConfig)
    filter: FilterStageConfig = field(default_factory=FilterStageConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               type(None): "null"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp``; nested dataclasses are built."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping ({cls.__name__}), got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; known keys{' of ' + prefix if prefix else ''}: "
                          f"{', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def config_from_dict(data: Mapping[str, Any], base_dir: str | Path = ".",
                     out: str | None = None) -> PipelineConfig:
    """Check a config mapping and resolve its paths.

    Args:
        data: the parsed YAML.
        base_dir: folder relative paths are read against (a config file's folder).
        out: overrides ``out`` (taken as given, i.e. relative to the working directory).

    Raises:
        ConfigError: naming the first unknown key, wrong type or missing key.
    """
    data = dict(data)
    if out is not None:
        data["out"] = str(Path(out).resolve())
    cfg = _build(PipelineConfig, data)
    _check_choices(cfg)
    return _resolve_paths(cfg, Path(base_dir))


def load_config(path: str | Path, out: str | None = None) -> PipelineConfig:
    """Read and check a pipeline YAML file (see :func:`config_from_dict`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    try:
        return config_from_dict(data or {}, path.parent, out)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _check_choices(cfg: PipelineConfig) -> None:
    from .normalise import get_normaliser

    if cfg.label.backend not in ("whisper", "faster-whisper"):
        raise ConfigError(f"label.backend: expected whisper or faster-whisper, got {cfg.label.backend!r}")
    for key, value in (("label.batch_size", cfg.label.batch_size),
                       ("evaluate.batch_size", cfg.evaluate.batch_size),
                       ("evaluate.resamples", cfg.evaluate.resamples)):
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")
    chosen = [k for k in ("threshold", "keep", "target_wer") if getattr(cfg.filter, k) is not None]
    if len(chosen) > 1:
        raise ConfigError(f"filter: give at most one of threshold, keep, target_wer "
                          f"(got {', '.join(chosen)})")
    for key, name in (("evaluate.normaliser", cfg.evaluate.normaliser),
                      *((f"evaluate.also[{i}]", n) for i, n in enumerate(cfg.evaluate.also))):
        try:
            get_normaliser(name)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    if cfg.train.enabled and not cfg.train.config:
        raise ConfigError("train.config: name the student's LightningCLI YAML (or set train.enabled: false)")
    if cfg.evaluate.enabled and not cfg.data.test:
        raise ConfigError("data.test: evaluation needs a test manifest (or set evaluate.enabled: false)")


def _resolve_paths(cfg: PipelineConfig, base: Path) -> PipelineConfig:
    out = _path(cfg.out, base, None)

    def p(value: str | None) -> str | None:
        return None if value is None else _path(value, base, out)

    def model(value: str) -> str:
        # a model is a name (base, tiny.en) unless it looks like a path
        looks_like_path = "/" in value or value.endswith((".pt", ".bin")) or "{out}" in value
        return p(value) if looks_like_path else value

    r = dataclasses.replace
    return r(
        cfg, out=out,
        data=r(cfg.data, train=p(cfg.data.train), test=p(cfg.data.test)),
        label=r(cfg.label, teacher=model(cfg.label.teacher),
                second=model(cfg.label.second) if cfg.label.second else None,
                labels=p(cfg.label.labels), second_labels=p(cfg.label.second_labels)),
        filter=r(cfg.filter, lexicon=p(cfg.filter.lexicon)),
        review=r(cfg.review, edits=p(cfg.review.edits)),
        train=r(cfg.train, config=p(cfg.train.config)),
        evaluate=r(cfg.evaluate, models={k: model(v) for k, v in cfg.evaluate.models.items()}),
    )


def _path(value: str, base: Path, out: str | None) -> str:
    if out is not None:
        value = value.replace("{out}", out)
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


# --- stage bookkeeping ----------------------------------------------------------------------


@dataclass(frozen=True)
class StageStatus:
    """What happened to one stage in this call: ``ran``, ``skipped`` (already done) or
    ``disabled`` (switched off in the config)."""

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
        return self.root / stage

    def done(self, stage: str) -> Path:
        return self.stage_dir(stage) / DONE

    @property
    def labels(self) -> Path:
        return Path(self.cfg.label.labels) if self.cfg.label.labels else self.label_dir / "labels.jsonl"

    @property
    def second(self) -> Path | None:
        if self.cfg.label.second_labels:
            return Path(self.cfg.label.second_labels)
        return self.label_dir / "second.jsonl" if self.cfg.label.second else None

    @property
    def filtered(self) -> Path:
        return self.filter_dir / "kept.jsonl"

    @property
    def training_manifest(self) -> Path:
        """The labels the student learns: reviewed, else filtered, else the teacher's."""
        reviewed = self.review_dir / "kept.jsonl"
        if self.cfg.review.enabled and reviewed.is_file():
            return reviewed
        return self.filtered if self.cfg.filter.enabled else self.labels

    @property
    def student_pt(self) -> Path:
        return self.export_dir / "student.pt"

    @property
    def train_yaml(self) -> Path:
        return self.train_dir / "student.yaml"


def _mark_done(path: Path, seconds: float, note: dict[str, Any]) -> None:
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"finished": finished, "seconds": round(seconds, 2), **note}
    atomic_write_text(path, json.dumps(body, indent=1) + "\n")


def stage_seconds(root: str | Path) -> dict[str, float]:
    """Seconds each finished stage took, from its ``.done`` note (for reports)."""
    cfg_root = Path(root)
    out = {}
    for stage in STAGES:
        d = cfg_root / stage / DONE
        if d.is_file():
            try:
                out[stage] = float(json.loads(d.read_text()).get("seconds", 0.0))
            except (ValueError, AttributeError):
                continue
    return out


# --- stages ---------------------------------------------------------------------------------


def _stage_label(p: Paths) -> dict[str, Any]:
    from .label import label_to_file
    from .teacher.options import LabelOptions

    cfg = p.cfg.label
    if cfg.labels:
        if not Path(cfg.labels).is_file():
            raise FileNotFoundError(f"label.labels: {cfg.labels} does not exist (merge the shards first)")
        notes: dict[str, Any] = {"labels": cfg.labels, "decoded": 0}
    else:
        options = LabelOptions(beam_size=cfg.beam_size)
        stats = label_to_file(p.cfg.data.train, p.labels, teacher=cfg.teacher, backend=cfg.backend,
                              options=options, batch_size=cfg.batch_size)
        notes = {"labels": str(p.labels), "decoded": stats.labeled, "skipped": stats.skipped,
                 "rtfx": round(stats.rtfx, 2)}
    if cfg.second and not cfg.second_labels:
        stats2 = label_to_file(p.cfg.data.train, p.second, teacher=cfg.second, backend=cfg.backend,
                               options=LabelOptions(), batch_size=cfg.batch_size)
        notes["second"] = {"labels": str(p.second), "decoded": stats2.labeled, "rtfx": round(stats2.rtfx, 2)}
    return notes


def _stage_filter(p: Paths) -> dict[str, Any]:
    from .correct import LEXICON_MIN_SIMILARITY, CorrectionConfig, read_lexicon
    from .filter import MIN_AGREEMENT, FilterConfig, filter_labels, read_labels

    cfg = p.cfg.filter
    labels = read_labels(p.labels)
    if not labels:
        raise ValueError(f"{p.labels} holds no labels: nothing to filter")
    second = None
    if p.second is not None:
        second = {lab.id: lab for lab in read_labels(p.second)}
    correction = CorrectionConfig(
        normaliser=cfg.normaliser,
        lexicon=read_lexicon(cfg.lexicon) if cfg.lexicon else (),
        lexicon_min_similarity=cfg.lexicon_similarity or LEXICON_MIN_SIMILARITY,
    )
    config = FilterConfig(score=cfg.score, threshold=cfg.threshold, keep=cfg.keep, target_wer=cfg.target_wer,
                          language=cfg.language,
                          min_agreement=MIN_AGREEMENT if cfg.min_agreement is None else cfg.min_agreement,
                          correction=correction)
    result = filter_labels(labels, second=second, config=config, review_fraction=cfg.review_fraction)
    write_filter_outputs(result, p.filter_dir, labels_path=p.labels, second_path=p.second)
    r = result.report
    return {"kept": r.kept, "dropped": r.dropped, "retention": round(r.retention, 4),
            "label_wer_all": r.label_wer_all, "label_wer_kept": r.label_wer_kept}


def write_filter_outputs(result, out: Path, labels_path: Path | None = None,
                         second_path: Path | None = None) -> None:
    """kept.jsonl, dropped.jsonl, filter_report.json and, where references exist,
    calibration.json/.png: the files ``asr-distill filter`` writes, from a ``FilterResult``."""
    from .calibrate import calibrate, write_calibration

    atomic_write_jsonl(out / "kept.jsonl", (x.to_dict() for x in result.kept))
    atomic_write_jsonl(out / "dropped.jsonl", (x.to_dict() for x in result.dropped))
    report = result.report.to_dict()
    report["labels"] = str(labels_path) if labels_path else None
    report["second_labels"] = str(second_path) if second_path else None
    cal = result.calibration
    if cal is None and result.report.references:
        # References present: the curves say how good each score is, even when none chose the threshold.
        ok = [x for x in (*result.kept, *result.dropped) if x.ref_text is not None and all(
            v.keep for v in x.filter_history if v.rule != "low_confidence")]
        if ok:
            nan = float("nan")
            table = {n: [nan if x.scores[n] is None else x.scores[n] for x in ok] for n in ok[0].scores}
            cal = calibrate(table,
                            [x.ref_text for x in ok], [x.text for x in ok],
                            keep=result.report.retention if result.report.retention > 0 else 1.0,
                            score=result.report.score, total=result.report.references)
    if cal is not None:
        write_calibration(cal, out / "calibration.json", out / "calibration.png")
        report["calibration"] = str(out / "calibration.json")
    atomic_write_text(out / "filter_report.json", json.dumps(report, indent=1) + "\n")


def _stage_review(p: Paths) -> dict[str, Any]:
    import math

    from .filter import read_pseudo_labels
    from .review import apply_review, export_review, read_edits

    cfg = p.cfg.review
    source = p.filtered if p.cfg.filter.enabled else None
    if source is None:
        raise ConfigError("review.enabled needs filter.enabled: review works on the filter's pseudo-labels")
    kept = read_pseudo_labels(source)
    k = cfg.k if cfg.k is not None else math.ceil(0.1 * len(kept))
    exported = export_review(kept, p.review_dir, k=k)
    notes: dict[str, Any] = {"page": str(exported.html), "items": exported.items}
    if cfg.edits:
        dropped = read_pseudo_labels(p.filter_dir / "dropped.jsonl")
        edits, reviewer, when = read_edits(cfg.edits)
        reviewer = cfg.reviewer or reviewer
        if not reviewer:
            raise ConfigError("review.reviewer: say who reviewed (the TSV does not record it)")
        r = apply_review(kept, dropped, edits, reviewer=reviewer, time=when)
        atomic_write_jsonl(p.review_dir / "kept.jsonl", (x.to_dict() for x in r.kept))
        atomic_write_jsonl(p.review_dir / "dropped.jsonl", (x.to_dict() for x in r.dropped))
        atomic_write_jsonl(p.review_dir / "review_audit.jsonl", r.audit)
        notes |= {"applied": str(cfg.edits), "kept": len(r.kept), "dropped": len(r.dropped)}
    else:
        log.info("review page written to %s; training goes on with the filter's labels until "
                 "review.edits names the reviewer's decisions", exported.html)
    return notes


def student_config(p: Paths) -> dict[str, Any]:
    """The student's LightningCLI config, pointed at this run's labels and folders."""
    import yaml

    base = yaml.safe_load(Path(p.cfg.train.config).read_text(encoding="utf-8")) or {}
    teacher = (base.get("model") or {}).get("teacher", p.cfg.label.teacher)
    if teacher != p.cfg.label.teacher:
        log.warning("student config's model.teacher %r differs from label.teacher %r; using the labeler's",
                    teacher, p.cfg.label.teacher)
    return place_student_config(base, p.train_dir, p.training_manifest, p.cfg.label.teacher,
                                p.cfg.train.overrides)


def place_student_config(base: Mapping[str, Any], root: Path, train_manifest: Path, teacher: str,
                         overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A student config with every path under ``root`` (run folder, checkpoints, logs, feature
    cache), the given labels and teacher, and dotted ``overrides`` applied last."""
    cfg = dict(base)
    cfg["model"] = {**(cfg.get("model") or {}), "teacher": teacher}
    cfg["data"] = {**(cfg.get("data") or {}), "train_manifest": str(train_manifest),
                   "cache_dir": str(root / "feature_cache")}
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


def _stage_train(p: Paths) -> dict[str, Any]:
    import yaml

    atomic_write_text(p.train_yaml, yaml.safe_dump(student_config(p), sort_keys=False))
    cmd = [*p.cfg.train.launcher, sys.executable, "-m", "asr_distill.cli", "train",
           "--config", str(p.train_yaml)]
    log_path = p.train_dir / "train.log"
    log.info("training: %s (log: %s)", shlex.join(cmd), log_path)
    # A process of its own: Lightning's global state and threads end with it, and a
    # crash leaves its checkpoints for the rerun to resume from.
    with open(log_path, "a", encoding="utf-8") as logf:
        rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=_child_env(),
                            preexec_fn=functools.partial(tie_to_parent, os.getpid())).returncode
    if rc != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"training failed (exit {rc}); see {log_path}; last lines:\n{tail}")
    return {"checkpoint": str(best_checkpoint(p.train_dir / "checkpoints")), "config": str(p.train_yaml)}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def best_checkpoint(ckpt_dir: Path) -> Path:
    """The checkpoint ModelCheckpoint judged best (read from ``last.ckpt``), else ``last.ckpt``."""
    import torch

    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        found = sorted(ckpt_dir.glob("*.ckpt"), key=lambda x: x.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"no checkpoint in {ckpt_dir}: did training run?")
        return found[-1]
    state = torch.load(last, map_location="cpu", weights_only=False)
    for key, value in (state.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(value, dict):
            best = value.get("best_model_path")
            if best and Path(best).is_file():
                return Path(best)
    return last


def _stage_export(p: Paths) -> dict[str, Any]:
    from .student.export import export_ct2, export_whisper_pt, load_student_checkpoint
    from .teacher import load_teacher

    ckpt = best_checkpoint(p.train_dir / "checkpoints")
    module = load_student_checkpoint(ckpt)
    desc = module.describe() | {"exported_from": str(ckpt.resolve())}
    out = export_whisper_pt(module.model, p.student_pt, desc, half=p.cfg.export.half)
    notes: dict[str, Any] = {"student": str(out), "checkpoint": str(ckpt)}
    if p.cfg.export.ct2:
        init = module.hparams.init
        side = load_teacher(module.hparams.teacher if init == "teacher" else init).ct2_dir
        if side is None:
            raise ValueError("export.ct2: the student's tokenizer source has no CTranslate2 folder "
                             "to copy tokenizer.json from")
        notes["ct2"] = str(export_ct2(module.model, p.export_dir / "ct2", side, desc))
    return notes


def eval_models(p: Paths) -> list[tuple[str, str]]:
    """(name, model) pairs to evaluate: the teacher first, then the config's, the student last."""
    models = [("teacher", p.cfg.label.teacher)]
    models += [(k, v) for k, v in p.cfg.evaluate.models.items() if k not in ("teacher", "student")]
    if p.cfg.train.enabled and p.cfg.export.enabled:
        models.append(("student", str(p.student_pt)))
    return models


def _stage_evaluate(p: Paths) -> dict[str, Any]:
    from .evaluate import evaluate

    cfg = p.cfg.evaluate
    ev = evaluate(eval_models(p), p.cfg.data.test, p.eval_dir, normaliser=cfg.normaliser,
                  other_normalisers=cfg.also, batch_size=cfg.batch_size, resamples=cfg.resamples,
                  device=cfg.device)
    return {r.model: {"wer": round(r.wer, 3), "rtfx": r.rtfx, "params": r.params} for r in ev.results}


def _stage_report(p: Paths) -> dict[str, Any]:
    from .report import write_report

    write_data_card(p)
    report = write_report(p.root)
    return {"report": str(report)}


# --- data card --------------------------------------------------------------------------------


def _licence(model: str) -> str:
    if model in KNOWN_LICENCES:
        return KNOWN_LICENCES[model]
    return "unknown: check the model's own terms"


def _skip_counts(labels: Path) -> dict[str, int]:
    from .label import skips_path

    skips = skips_path(labels)
    counts: dict[str, int] = {}
    if skips.is_file():
        for d in read_jsonl(skips):
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
    return counts


def data_card(p: Paths) -> dict[str, Any]:
    """What the student learned from: sources and licences, the teacher and its licence,
    label counts and hours, drops per reason, label WER where references existed."""
    card: dict[str, Any] = {
        "name": p.cfg.name,
        "sources": [dataclasses.asdict(s) for s in p.cfg.data.sources],
        "unlabeled_pool": p.cfg.data.train,
        "test_set": p.cfg.data.test,
        "teacher": {"model": p.cfg.label.teacher, "licence": _licence(p.cfg.label.teacher)},
        "second_model": ({"model": p.cfg.label.second, "licence": _licence(p.cfg.label.second)}
                         if p.cfg.label.second else None),
    }
    if p.labels.is_file():
        rows = [d for d in read_jsonl(p.labels)]
        prov = rows[0].get("provenance", {}) if rows else {}
        card["teacher"] |= {"weights_sha256": prov.get("weights_sha256"), "decoding": prov.get("decoding"),
                            "toolkit_version": prov.get("toolkit_version")}
        card["labels"] = {"utterances": len(rows), "hours": round(sum(d["duration"] for d in rows) / 3600, 4),
                          "skipped_inputs": _skip_counts(p.labels)}
    report_path = p.filter_dir / "filter_report.json"
    if report_path.is_file():
        r = json.loads(report_path.read_text())
        card["filter"] = {k: r.get(k) for k in (
            "utterances", "kept", "dropped", "retention", "hours", "kept_hours", "by_reason", "score",
            "threshold", "threshold_source", "normaliser", "wer_normaliser", "corrections",
            "label_wer_all", "label_wer_kept", "references", "review_load_min_per_h")}
    reviewed = p.review_dir / "review_audit.jsonl"
    if reviewed.is_file():
        card["review"] = {"decisions": sum(1 for _ in read_jsonl(reviewed))}
    card["training_manifest"] = str(p.training_manifest)
    return card


def format_data_card(card: dict[str, Any]) -> str:
    """The data card as markdown."""
    lines = [f"# Data card: {card['name']}", "", "## Sources", ""]
    for s in card["sources"] or [{"name": card["unlabeled_pool"], "licence": None, "url": None}]:
        lines.append(f"- {s['name']}: licence {s.get('licence') or 'unknown'}"
                     + (f" ({s['url']})" if s.get("url") else "")
                     + (f". {s['notes']}" if s.get("notes") else ""))
    t = card["teacher"]
    lines += ["", "## Labels", "", f"- teacher: `{t['model']}`, licence {t['licence']}"
              + (f", weights sha256 {t['weights_sha256'][:16]}..." if t.get("weights_sha256") else "")]
    if card.get("second_model"):
        lines.append(f"- second model (agreement score): `{card['second_model']['model']}`, "
                     f"licence {card['second_model']['licence']}")
    if "labels" in card:
        lab = card["labels"]
        lines.append(f"- labeled: {lab['utterances']} utterances, {lab['hours']:.3f} h")
        if lab["skipped_inputs"]:
            skipped = ", ".join(f"{k} {v}" for k, v in lab["skipped_inputs"].items())
            lines.append(f"- inputs skipped: {skipped}")
    f = card.get("filter")
    if f:
        lines += ["", "## Filter", "",
                  f"- kept {f['kept']} of {f['utterances']} ({f['retention']:.1%}), {f['kept_hours']:.3f} of "
                  f"{f['hours']:.3f} h; score `{f['score']}` threshold {f['threshold']} "
                  f"({f['threshold_source']})",
                  f"- correction normaliser `{f['normaliser']}`; corrections: "
                  + (", ".join(f"{k} {v}" for k, v in (f["corrections"] or {}).items()) or "none")]
        if f["by_reason"]:
            lines += ["", "| dropped for | utterances | hours |", "|---|---|---|"]
            lines += [f"| {k} | {v['utterances']} | {v['hours']:.4f} |" for k, v in f["by_reason"].items()]
        if f.get("label_wer_all") is not None:
            kept = f["label_wer_kept"]
            lines += ["", f"Label WER against the pool's own transcripts ({f['wer_normaliser']}, "
                      f"used only to measure): all {f['label_wer_all']:.2f}%, kept "
                      + ("-" if kept is None else f"{kept:.2f}%") + f" ({f['references']} references)."]
    if "review" in card:
        lines.append(f"- human review: {card['review']['decisions']} decisions applied")
    lines += ["", f"Training manifest: `{card['training_manifest']}`", ""]
    return "\n".join(lines)


def write_data_card(p: Paths) -> Path:
    """``data_card.json`` and ``data_card.md`` in the run root."""
    card = data_card(p)
    atomic_write_text(p.root / "data_card.json", json.dumps(card, indent=1) + "\n")
    atomic_write_text(p.root / "data_card.md", format_data_card(card))
    return p.root / "data_card.md"


# --- the runner ---------------------------------------------------------------------------------


def _clear_stale(p: Paths, stage: str) -> None:
    """Remove what a stage resumes from, when an earlier stage just made new inputs for it
    (or the stage is forced to run again).

    Without this, training would "resume" a finished run on old labels and evaluation
    would reuse an old student's hypotheses. Outputs that are simply overwritten (filter,
    export, report) and the encoder-feature cache (keyed by audio, not labels) are kept;
    the review folder is never touched, since it may hold a person's edits.
    """
    import shutil

    doomed: list[Path] = []
    if stage == "train":
        doomed = [p.train_dir / "checkpoints", p.train_dir / "metrics.csv", p.train_dir / "hparams.yaml",
                  p.train_dir / "logs"]
    elif stage == "evaluate":
        doomed = [p.eval_dir]
    for path in doomed:
        if path.is_dir():
            log.info("%s: inputs changed, removing %s", stage, path)
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


StageFn = Callable[[Paths], dict[str, Any]]
_STAGE_FNS: dict[str, StageFn] = {
    "label": _stage_label, "filter": _stage_filter, "review": _stage_review, "train": _stage_train,
    "export": _stage_export, "evaluate": _stage_evaluate, "report": _stage_report,
}


def _enabled(cfg: PipelineConfig, stage: str) -> bool:
    return {
        "label": True,
        "filter": cfg.filter.enabled,
        "review": cfg.review.enabled,
        "train": cfg.train.enabled,
        "export": cfg.train.enabled and cfg.export.enabled,
        "evaluate": cfg.evaluate.enabled,
        "report": True,
    }[stage]


def _stage_range(start: str | None, stop: str | None) -> list[str]:
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    a = STAGES.index(start) if start else 0
    b = STAGES.index(stop) if stop else len(STAGES) - 1
    return list(STAGES[a:b + 1])


def _as_config(config: str | os.PathLike | Mapping[str, Any] | PipelineConfig) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    return load_config(config)


def stage_outputs(p: Paths, stage: str) -> list[Path]:
    """The files a finished stage must have left; a marker without them does not count."""
    return {
        "label": [p.labels] + ([p.second] if p.second is not None else []),
        "filter": [p.filter_dir / "kept.jsonl", p.filter_dir / "filter_report.json"],
        "review": [p.review_dir / "kept.jsonl"] if p.cfg.review.edits else [],
        "train": [p.train_dir / "checkpoints"],
        "export": [p.student_pt],
        "evaluate": [p.eval_dir / "summary.json"],
        "report": [p.report_dir / "report.md"],
    }[stage]


def _finished(p: Paths, stage: str) -> bool:
    return p.done(stage).is_file() and all(x.exists() for x in stage_outputs(p, stage))


def _newer_upstream(p: Paths, stage: str) -> str | None:
    """The name of an enabled earlier stage that finished after ``stage`` did, if any."""
    marker = p.done(stage)
    if not marker.is_file():
        return None
    mine = marker.stat().st_mtime_ns
    for up in STAGES[:STAGES.index(stage)]:
        m = p.done(up)
        if _enabled(p.cfg, up) and m.is_file() and m.stat().st_mtime_ns > mine:
            return up
    return None


def plan(config: str | os.PathLike | Mapping[str, Any] | PipelineConfig) -> list[tuple[str, str]]:
    """What :func:`run` would do to each stage, without doing it: ``(stage, why)`` where
    ``why`` is ``done``, ``disabled``, ``not done``, ``outputs missing`` (marker without
    its files) or ``stale: ...`` (an earlier stage is newer, or will run)."""
    cfg = _as_config(config)
    p = Paths(cfg)
    out, rerun = [], False
    for stage in STAGES:
        if not _enabled(cfg, stage):
            out.append((stage, "disabled"))
            continue
        newer = _newer_upstream(p, stage)
        if not p.done(stage).is_file():
            why = "not done"
        elif not _finished(p, stage):
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
        start, stop: run only the stages from ``start`` to ``stop`` (names in
            :data:`STAGES`); earlier stages must have finished.
        force: run the selected stages even when their ``.done`` marker exists.

    Returns:
        A :class:`RunResult` saying which stages ran and which were skipped.

    Raises:
        ConfigError: for a bad config, before any work starts.
        RuntimeError: when a stage fails; its marker is not written, so a rerun retries it.
    """
    cfg = _as_config(config)
    p = Paths(cfg)
    try:
        p.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputNotWritableError(f"cannot create the output root {p.root}: {e.strerror}") from e
    with exclusive_lock(p.root / ".lock", p.root, "wait for that run, or give this one another out"):
        return _run_locked(cfg, p, start, stop, force)


def _run_locked(cfg: PipelineConfig, p: Paths, start: str | None, stop: str | None, force: bool) -> RunResult:
    atomic_write_text(p.root / "pipeline_config.json", json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    selected = _stage_range(start, stop)
    for stage in STAGES[:STAGES.index(selected[0])]:
        if _enabled(cfg, stage) and not p.done(stage).is_file():
            raise RuntimeError(f"stage {stage} has not finished ({p.done(stage)} missing); "
                               f"run from an earlier stage")
    statuses: list[StageStatus] = []
    upstream_ran = False
    for stage in selected:
        if not _enabled(cfg, stage):
            statuses.append(StageStatus(stage, "disabled"))
            continue
        marker = p.done(stage)
        newer = _newer_upstream(p, stage)
        if _finished(p, stage) and not force and not upstream_ran and newer is None:
            log.info("stage %s: done before (%s), skipped", stage, marker)
            statuses.append(StageStatus(stage, "skipped"))
            continue
        if marker.is_file():
            marker.unlink()  # rerun: forget the old marker first, so a kill now cannot look finished
        if force or upstream_ran or newer is not None:
            _clear_stale(p, stage)  # forced: from scratch, not a resume of the old run
        log.info("stage %s: running%s", stage, f" ({newer} is newer)" if newer else "")
        started = time.perf_counter()
        notes = _STAGE_FNS[stage](p)
        seconds = time.perf_counter() - started
        _mark_done(marker, seconds, {"stage": stage, **notes})
        log.info("stage %s: finished in %.1f s", stage, seconds)
        statuses.append(StageStatus(stage, "ran", round(seconds, 2)))
        upstream_ran = True
    report = p.report_dir / "report.md"
    table = p.eval_dir / "table.md"
    return RunResult(str(p.root), tuple(statuses), str(report) if report.is_file() else None,
                     table.read_text() if table.is_file() else None)


__all__ = [
    "STAGES",
    "ConfigError",
    "PipelineConfig",
    "RunResult",
    "StageStatus",
    "config_from_dict",
    "data_card",
    "load_config",
    "plan",
    "run",
    "place_student_config",
    "student_config",
    "write_data_card",
    "write_filter_outputs",
]
