"""The pipeline's config: one frozen dataclass per stage, read with jsonargparse.

jsonargparse (the library LightningCLI reads the student's YAML with) builds the schema
from the dataclasses' type hints, so a field added here is a config key at once. It is
checked before any work starts, and every problem is one :class:`ConfigError` that names
the key in full (``filter.keep: expected a number or null, got 'lots'``). Relative paths
in a config file are read against the file's own folder; ``{out}`` in a path stands for
the output root.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..audio import MAX_SEGMENT_S, SEGMENTERS, check_segmenting
from ..quality.stage import FilterOptions, ReviewOptions
from ..teacher.options import (
    AUTO_BATCH,
    BACKENDS,
    DEFAULT_BEST_OF,
    DEFAULT_MIN_WINDOW_S,
    DEFAULT_TEACHER,
    ENGINES,
    PRECISIONS,
    SHORT_WINDOWS_S,
    LabelOptions,
    check_batch_size,
)

if TYPE_CHECKING:
    from ..evaluate import Decoding, Scoring
    from ..label import LabelRun
    from ..label_job import Placement


class ConfigError(ValueError):
    """A pipeline config that cannot run: the message names the key and what is wrong."""


@dataclass(frozen=True)
class Source:
    """Where audio came from, for the data card."""

    name: str
    licence: str | None = None
    url: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """The data: ``train`` to label, ``test`` to measure on.

    ``train`` is the unlabeled pool (a NeMo manifest; its ``text``, if any, only measures
    label quality); ``test`` is the evaluation manifest, with references.
    """

    train: str
    test: str | None = None
    sources: list[Source] = field(default_factory=list)


@dataclass(frozen=True)
class Opinion:
    """One more decoding of the pool that votes on the teacher's words, after ``second``.

    ``model`` is a name or a checkpoint as ``teacher`` is; ``beam_size``, ``temperature``,
    ``best_of`` and ``seed`` mean what ``asr-distill label``'s flags mean, so the teacher
    with beam search is ``{model: base, beam_size: 5}`` and the teacher at a temperature
    ``{model: base, temperature: [0.7], best_of: 1, seed: 1}`` (another seed, another
    opinion). Every opinion decodes with the label stage's other settings.
    """

    model: str
    beam_size: int | None = None
    temperature: list[float] | None = None
    best_of: int = DEFAULT_BEST_OF
    seed: int = 0

    def stem(self) -> str:
        """A file name that tells opinions apart: model, beam, temperature and seed."""
        name = Path(self.model).name.replace(".", "_")
        if self.beam_size:
            name += f"_beam{self.beam_size}"
        if self.temperature is not None:
            name += "_t" + "-".join(f"{t:g}" for t in self.temperature) + f"_best{self.best_of}_s{self.seed}"
        return name

    def decoding(self) -> tuple:
        """What makes two opinions the same decoding: the model, as a path when it is one, and its settings.

        Not :meth:`stem`: two checkpoints with one file name in two folders share a stem but
        decode differently (the layout's file names carry the opinion's index as well).
        """
        temperature = None if self.temperature is None else tuple(self.temperature)
        return (os.path.normpath(self.model), self.beam_size, temperature, self.best_of, self.seed)


@dataclass(frozen=True)
class LabelConfig:
    """The teacher, an optional second model, and how both decode.

    The second model's agreement is the strongest confidence score. ``labels`` names labels
    made elsewhere (e.g. a SLURM array, merged): the stage then decodes nothing.

    The decoding keys are ``asr-distill label``'s options under the same names
    (``--min-window 15`` is ``min_window: 15``); ``teacher`` is its ``--model``,
    ``language: auto`` detects per clip, and ``progress`` is the opposite of
    ``--no-progress`` (off here: a pipeline's log is read later). The second model decodes
    with the same settings, greedily. ``--shard`` has no key: label shards apart and name
    the merged file in ``labels``. ``pack_s`` (``--pack-s``) packs the teacher's and the second
    model's windows alike, so their agreement compares like with like. ``opinions`` are more
    decodings of the pool (:class:`Opinion`) that vote on each word with the second model's:
    the consensus confidence the filter's ``consensus_*`` scores and the review queue read.
    """

    teacher: str = DEFAULT_TEACHER
    second: str | None = "tiny.en"
    batch_size: int | Literal["auto"] = AUTO_BATCH
    beam_size: int | None = None
    temperature: list[float] | None = None
    best_of: int = DEFAULT_BEST_OF
    backend: Literal[BACKENDS] = "whisper"
    labels: str | None = None
    second_labels: str | None = None
    language: str = "en"
    full_context: bool = False
    min_window: float = DEFAULT_MIN_WINDOW_S
    precision: Literal[PRECISIONS] = "auto"
    workers: int = 1
    seed: int = 0
    threads: int = 0
    device: str | None = None
    progress: bool = False
    word_timestamps: bool = False
    segmenter: Literal[SEGMENTERS] = "energy"
    segment_s: float = MAX_SEGMENT_S
    cut_pause_s: float | None = None
    engine: Literal[ENGINES] = "local"
    ray_address: str | None = None
    pack_s: float | None = None
    opinions: list[Opinion] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_segmenting(self.segmenter, self.segment_s, self.cut_pause_s)
        seen: dict[tuple, int] = {}
        for i, opinion in enumerate(self.opinions):
            j = seen.setdefault(opinion.decoding(), i)
            if j != i:
                raise ValueError(
                    f"opinions: the same decoding twice (opinions[{j}] and opinions[{i}]: {opinion.stem()}); "
                    "give one another seed or setting"
                )
        for i, opinion in enumerate(self.opinions):
            try:
                self.opinion_options(opinion)
            except ValueError as e:
                raise ValueError(f"opinions[{i}]: {e}") from None
        if self.pack_s is not None and not 0 < self.pack_s <= MAX_SEGMENT_S:
            raise ValueError(f"label.pack_s must be in (0, {MAX_SEGMENT_S:g}] seconds, got {self.pack_s}")

    def options(self, greedy: bool = False) -> LabelOptions:
        """Decoding options as ``asr-distill label`` builds them from its flags.

        Args:
            greedy: no beam search or sampling whatever ``beam_size`` and ``temperature``
                say, and no word timings (the second model).

        Raises:
            ValueError: from :class:`LabelOptions`, e.g. a ``min_window`` it has no step for.
        """
        return LabelOptions.from_flags(
            beam_size=None if greedy else self.beam_size,
            language=self.language,
            min_window=self.min_window,
            full_context=self.full_context,
            word_timestamps=self.word_timestamps and not greedy,
            temperature=None if greedy else self.temperature,
            best_of=self.best_of,
        )

    def opinion_options(self, opinion: Opinion) -> LabelOptions:
        """How ``opinion`` decodes: these settings with its beam, temperature and best-of, no word timings."""
        return dataclasses.replace(
            self,
            beam_size=opinion.beam_size,
            temperature=opinion.temperature,
            best_of=opinion.best_of,
            word_timestamps=False,
            opinions=[],
        ).options()

    def run(self, teacher: str, options: LabelOptions, seed: int | None = None) -> LabelRun:
        """How ``teacher`` labels the pool with ``options``: these settings as a :class:`LabelRun`.

        Raises:
            ValueError: from :class:`LabelRun`, e.g. a ``batch_size`` below 1.
        """
        from ..label import LabelRun

        return LabelRun(
            teacher,
            self.backend,
            options,
            self.batch_size,
            seed=self.seed if seed is None else seed,
            progress=self.progress,
            device=self.device,
            precision=self.precision,
            segmenter=self.segmenter,
            segment_s=self.segment_s,
            cut_pause_s=self.cut_pause_s,
        )

    def placement(self) -> Placement:
        """Where the label stage runs: ``engine``, ``workers``, ``threads``, ``ray_address``."""
        from ..label_job import Placement

        return Placement(self.engine, self.workers, self.threads, self.ray_address)


@dataclass(frozen=True)
class FilterStageConfig(FilterOptions):
    """The filter stage: every option of ``asr-distill filter``, plus ``enabled``.

    The options are :class:`FilterOptions`, and checked there.
    """

    enabled: bool = True


@dataclass(frozen=True)
class ReviewConfig(ReviewOptions):
    """Human review (:class:`ReviewOptions`), off unless asked for.

    Enabled without ``edits``: the page is exported and training goes on with the filter's
    labels; with ``edits`` (the page's JSON or the edited TSV) they are applied and training
    uses the reviewed labels.
    """

    enabled: bool = False
    edits: str | None = None


MEMBER_SEED_STEP = 1000  # soup member i trains with seed_everything and data.seed + this * i


@dataclass(frozen=True)
class TrainConfig:
    """Training the student, from its LightningCLI YAML (``config``).

    The pipeline points the config's data, cache, logs and checkpoints into the run root.
    ``overrides``: dotted keys applied last (``{"trainer.max_epochs": 3}``). ``launcher``: a
    command the training process is started under, e.g. ``[srun]`` inside a SLURM job with
    one task per GPU, so Lightning runs DDP across them.

    ``members`` > 1 trains that many students on the same labels, member ``i`` with
    ``seed_everything`` and ``data.seed`` + ``MEMBER_SEED_STEP`` * i (in ``train/`` and ``train/member<i>/``,
    sharing one feature cache), and the export averages them weight by weight (a uniform
    model soup) before any WiSE-FT mix: ``members`` times the training for a student with
    less of any one seed's noise.
    """

    enabled: bool = True
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)
    members: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f"train.members must be a whole number >= 1, got {self.members!r}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Models compared beside the student on ``data.test`` (the ``in_domain`` set) and on ``sets``.

    ``models`` maps a name to a model; ``teacher`` defaults to the labeling teacher. ``sets``
    names out-of-domain test manifests (``--set NAME=MANIFEST``); one that is absent is
    skipped with the reason logged and recorded. ``baselines`` maps a row to the row it
    started from (``--baseline``); null reads it from the student's checkpoint.
    """

    enabled: bool = True
    models: dict[str, str] = field(default_factory=lambda: {"tiny.en": "tiny.en"})
    sets: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, str] | None = None
    normaliser: str = "format_insensitive"
    also: list[str] = field(default_factory=lambda: ["whisper_en"])
    batch_size: int | Literal["auto"] = AUTO_BATCH
    resamples: int = 1000
    seed: int = 0
    device: str = "auto"

    def scoring(self) -> Scoring:
        """The scoring settings, as ``asr-distill evaluate`` builds them from its flags."""
        from ..evaluate import Scoring

        return Scoring(self.normaliser, tuple(self.also), self.resamples, seed=self.seed)

    def decoding(self) -> Decoding:
        """The decoding settings (no progress bar: a pipeline's log is read later)."""
        from ..evaluate import Decoding

        return Decoding(self.batch_size, device=self.device)


CHECKPOINT_CHOICES = ("best", "last")  # export.checkpoint


@dataclass(frozen=True)
class ExportConfig:
    """``ct2``: also a CTranslate2 folder; ``half``: fp16 weights in ``student.pt``.

    ``wise_alpha`` < 1 exports a weight-space mix of the trained student and its starting
    model (WiSE-FT): that fraction of training's change is kept, trading in-domain gain
    for what the starting model knew elsewhere. ``checkpoint``: ``best`` (the one the
    checkpoint callback judged best on validation) or ``last`` (the end of training: where
    the held-out pseudo-labels are too few to choose between epochs).
    """

    enabled: bool = True
    ct2: bool = False
    half: bool = False
    wise_alpha: float = 1.0
    checkpoint: str = "best"

    def __post_init__(self) -> None:
        if not 0.0 <= self.wise_alpha <= 1.0:
            raise ValueError(f"export.wise_alpha must be in [0, 1], got {self.wise_alpha}")
        if self.checkpoint not in CHECKPOINT_CHOICES:
            raise ValueError(
                f"export.checkpoint must be one of {CHECKPOINT_CHOICES}, got {self.checkpoint!r}"
            )


@dataclass(frozen=True)
class PipelineConfig:
    """One run: where it writes, what it reads, and each stage's settings.

    ``rounds`` > 1 iterates (the ``rounds`` stage, after ``evaluate``): round ``k``'s
    student decodes the pool, its labels join the filter's vote (a ``consensus_*``
    ``filter.score``), the filter reruns on the teacher's labels and a new student trains.
    The rounds stop early once ``rounds_patience`` rounds in a row have not lowered the
    student's WER on ``rounds_dev``: a set evaluated (``in_domain`` is ``data.test``; name a
    held-out dev manifest in ``evaluate.sets`` to keep the test set out of the decision) or
    ``validation`` (the best ``val/wer`` in training, measured on held-out pseudo-labels).
    """

    out: str
    data: DataConfig
    name: str = "run"
    label: LabelConfig = field(default_factory=LabelConfig)
    filter: FilterStageConfig = field(default_factory=FilterStageConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    rounds: int = 1
    rounds_patience: int = 1
    rounds_dev: str = "in_domain"


# the early-stop rule's other choice of dev set: the student's own validation WER
VALIDATION_DEV = "validation"


# --- loading ---------------------------------------------------------------------------------


def config_from_dict(
    data: Mapping[str, Any], base_dir: str | Path = ".", out: str | None = None
) -> PipelineConfig:
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
    cfg = _parse(_known_keys(PipelineConfig, data))
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


@functools.cache
def _parser():
    """A jsonargparse parser whose one argument is the whole config (built once)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", type=PipelineConfig, required=True)
    return parser


def _parse(data: dict[str, Any]) -> PipelineConfig:
    """Types checked and the dataclasses built by jsonargparse; its errors as ConfigError."""
    from jsonargparse import ArgumentError

    parser = _parser()
    try:
        return parser.instantiate(parser.parse_object({"config": data})).config
    except ArgumentError as e:
        raise ConfigError(_message(str(e), data)) from None
    except ValueError as e:  # a section's own check (``FilterOptions.__post_init__``...)
        raise ConfigError(f"{_failed_section(e)}: {e}") from None


def _failed_section(error: ValueError) -> str:
    """The config key of the section whose ``__post_init__`` raised ``error``."""
    sections = {tp: key for key, tp in typing.get_type_hints(PipelineConfig).items()}
    tb, key = error.__traceback__, "config"
    while tb is not None:  # the innermost frame whose ``self`` is a section wins
        key = sections.get(type(tb.tb_frame.f_locals.get("self")), key)
        tb = tb.tb_next
    return key


_WRONG_TYPE = re.compile(r'Parser key "config\.([^"]+)"')
_MISSING = re.compile(r"arguments are required: (.+)")


def _message(error: str, data: Mapping[str, Any]) -> str:
    """The error jsonargparse gives, said with the key's full name and the value it got."""
    if m := _MISSING.search(error):
        keys = [k.strip().removeprefix("config.") for k in m.group(1).split(",")]
        return f"missing required key {', '.join(keys)}"
    if m := _WRONG_TYPE.search(error):
        key = m.group(1)
        tp, value = PipelineConfig, data
        for part in key.split("."):
            tp = typing.get_type_hints(tp).get(part) if dataclasses.is_dataclass(tp) else None
            value = value.get(part) if isinstance(value, Mapping) else None
        if tp is not None:
            return f"{key}: expected {_expected(tp)}, got {value!r}"
        return f"{key}: {error.splitlines()[-1].strip()}"
    return f"config: {error.splitlines()[0]}"


def _known_keys(cls: type, data: Any, prefix: str = "") -> dict[str, Any]:
    """``data`` with every key, nested sections included, checked against ``cls``'s fields.

    jsonargparse drops an unknown key that holds an empty mapping and takes null for any
    field; both are caught here, so a typo never passes silently. A null section means
    its defaults (``review:`` with everything under it commented out).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected {_expected(cls)}, got {data!r}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in hints:
            where = f" of {prefix.rstrip('.')}" if prefix else ""
            raise ConfigError(f"unknown key {name}; known keys{where}: {', '.join(hints)}")
        tp = hints[key]
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if dataclasses.is_dataclass(tp):
            value = _known_keys(tp, value, f"{name}.")
        elif dataclasses.is_dataclass(item) and isinstance(value, list):
            value = [_known_keys(item, v, f"{name}[{i}].") for i, v in enumerate(value)]
        elif value is None and type(None) not in typing.get_args(tp):
            raise ConfigError(f"{name}: expected {_expected(tp)}, got None")
        checked[key] = value
    return checked


_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _expected(tp: Any) -> str:
    """A field's type in words, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        words = [_expected(a) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return _WORDS.get(tp, str(tp))


# --- checks beyond types, and paths -----------------------------------------------------------


def _check_choices(cfg: PipelineConfig) -> None:
    """Value checks the types cannot say: ranges, names, combinations."""
    from ..normalise import get_normaliser

    for key, size in (
        ("label.batch_size", cfg.label.batch_size),
        ("evaluate.batch_size", cfg.evaluate.batch_size),
    ):
        try:
            check_batch_size(size)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    for key, value, least in (
        ("label.workers", cfg.label.workers, 1),
        ("label.threads", cfg.label.threads, 0),
        ("evaluate.resamples", cfg.evaluate.resamples, 1),
        ("rounds", cfg.rounds, 1),
        ("rounds_patience", cfg.rounds_patience, 1),
    ):
        if value < least:
            raise ConfigError(f"{key}: must be >= {least}, got {value}")
    if cfg.label.min_window not in SHORT_WINDOWS_S:
        steps = ", ".join(f"{w:g}" for w in SHORT_WINDOWS_S)
        raise ConfigError(f"label.min_window: expected one of {steps}, got {cfg.label.min_window:g}")
    try:
        cfg.label.options()
    except ValueError as e:
        raise ConfigError(f"label: {e}") from None
    for key, name in (
        ("evaluate.normaliser", cfg.evaluate.normaliser),
        *((f"evaluate.also[{i}]", n) for i, n in enumerate(cfg.evaluate.also)),
    ):
        try:
            get_normaliser(name)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None
    if cfg.train.enabled and not cfg.train.config:
        raise ConfigError("train.config: name the student's LightningCLI YAML (or set train.enabled: false)")
    if cfg.evaluate.enabled and not cfg.data.test:
        raise ConfigError("data.test: evaluation needs a test manifest (or set evaluate.enabled: false)")
    for name in cfg.evaluate.sets:
        if name == "in_domain" or not name or "@" in name or "/" in name:
            raise ConfigError(
                f"evaluate.sets: {name!r} cannot name a set (in_domain is data.test; no '@' or '/')"
            )
    if cfg.rounds > 1:
        _check_rounds(cfg)


def _check_rounds(cfg: PipelineConfig) -> None:
    """What iterating needs: every stage of a round, a vote the students can join, a dev set."""
    from ..quality.confidence import CONSENSUS_SCORES

    for key, on in (
        ("filter.enabled", cfg.filter.enabled),
        ("train.enabled", cfg.train.enabled),
        ("export.enabled", cfg.export.enabled),
        ("evaluate.enabled", cfg.evaluate.enabled),
    ):
        if not on:
            raise ConfigError(f"{key}: rounds: {cfg.rounds} reruns this stage every round; set it true")
    if cfg.filter.score not in CONSENSUS_SCORES:
        raise ConfigError(
            f"filter.score: rounds: {cfg.rounds} needs a score the students' labels vote in "
            f"({', '.join(CONSENSUS_SCORES)}), got {cfg.filter.score!r}; the pairwise scores "
            "read only the first opinion, so every round would keep the same labels"
        )
    f = cfg.filter
    if f.threshold is None and f.keep is None and f.target_wer is None:
        raise ConfigError(
            f"filter.threshold: {f.score} has no documented default; give filter.threshold or filter.keep"
        )
    dev_sets = ("in_domain", VALIDATION_DEV, *cfg.evaluate.sets)
    if cfg.rounds_dev not in dev_sets:
        raise ConfigError(f"rounds_dev: expected one of {', '.join(dev_sets)}, got {cfg.rounds_dev!r}")


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
        cfg,
        out=out,
        data=r(cfg.data, train=p(cfg.data.train), test=p(cfg.data.test)),
        label=r(
            cfg.label,
            teacher=model(cfg.label.teacher),
            second=model(cfg.label.second) if cfg.label.second else None,
            labels=p(cfg.label.labels),
            second_labels=p(cfg.label.second_labels),
            opinions=[r(o, model=model(o.model)) for o in cfg.label.opinions],
        ),
        filter=r(cfg.filter, lexicon=p(cfg.filter.lexicon)),
        review=r(cfg.review, edits=p(cfg.review.edits), calibrate_on=p(cfg.review.calibrate_on)),
        train=r(
            cfg.train,
            config=p(cfg.train.config),
            # an override naming a file of this run (a replay manifest under {out}) resolves too
            overrides={
                k: p(v) if isinstance(v, str) and "{out}" in v else v for k, v in cfg.train.overrides.items()
            },
        ),
        evaluate=r(
            cfg.evaluate,
            models={k: model(v) for k, v in cfg.evaluate.models.items()},
            sets={k: p(v) for k, v in cfg.evaluate.sets.items()},
        ),
    )


def _path(value: str, base: Path, out: str | None) -> str:
    if out is not None:
        value = value.replace("{out}", out)
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())
