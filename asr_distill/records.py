"""Typed records that the stages exchange, one JSON line (or one JSON file) each.

Records are frozen: a stage never edits another stage's record, it makes a new one
(``dataclasses.replace``). Field names follow NeMo manifests (``audio_filepath``,
``duration``, ``offset``, ``text``) and openai-whisper's ``DecodingResult``
(``avg_logprob``, ``no_speech_prob``, ``compression_ratio``), so a label file is
both a NeMo training manifest and a full record of the teacher's confidence.

In data-flow order: the input (:class:`Utterance`, :class:`Skip`), the teacher's label
(:class:`TokenScore`, :class:`Provenance`, :class:`TeacherLabel`), the quality stage's
pseudo-label (:class:`Correction`, :class:`Verdict`, :class:`ReviewEntry`,
:class:`PseudoLabel`) and evaluation (:class:`WerResult`, :class:`UtteranceScore`,
:class:`Interval`, :class:`GroupWer`, :class:`Transcription`, :class:`ModelResult`,
:class:`PairedComparison`, :class:`Evaluation`).

Every record is written with :func:`to_dict` and read back with :func:`from_dict`,
which builds nested records and tuples from the type hints; no record has a decoder of
its own. This module imports no other module of the package: every stage may use it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")

# A paired difference is called significant below this p-value (PairedComparison.a_better).
SIGNIFICANCE = 0.05


class Record:
    """The two methods every record shares; both defer to the module's functions."""

    def to_dict(self) -> dict[str, Any]:
        """This record as a plain dict (see :func:`to_dict`)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        """This record type built from a dict (see :func:`from_dict`)."""
        return from_dict(cls, d)


# --- input -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance(Record):
    """One stretch of audio to label: a manifest line, or a segment of a long one.

    ``text`` is the manifest's own transcript when it has one (used only to measure).
    """

    id: str
    audio_filepath: str
    duration: float
    offset: float = 0.0
    text: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Skip(Record):
    """An input the job could not use, and why. Recorded so that nothing vanishes silently.

    ``reason`` is a short stable code (``missing``, ``unreadable``, ``silent``...),
    ``message`` says what was seen and, where it helps, what to do.
    """

    id: str
    audio_filepath: str
    reason: str
    message: str
    offset: float = 0.0
    duration: float | None = None
    kind: ClassVar[str] = "skip"

    @classmethod
    def of(cls, utt: Utterance, reason: str, message: str, duration: float | None = None) -> Skip:
        """The skip of ``utt`` (its id, file and offset); ``duration`` defaults to the utterance's."""
        span = utt.duration if duration is None else duration
        return cls(utt.id, utt.audio_filepath, reason, message, utt.offset, span)


# --- teacher -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenScore(Record):
    """One output token: its text, log-probability, and the entropies (nats) of its step.

    ``entropy`` is Gibbs/Shannon; ``tsallis`` and ``renyi`` are the parametric entropies
    NeMo's confidence uses, at the ``entropy_alpha`` named in the provenance's options.
    """

    text: str
    logprob: float
    entropy: float | None
    tsallis: float | None = None
    renyi: float | None = None


@dataclass(frozen=True)
class WordTiming(Record):
    """One spoken word with its place in the clip (seconds from the clip's start) and probability.

    From openai-whisper's cross-attention alignment (``word_timestamps``); ``probability`` is
    the mean of the word's token probabilities, so a review page can highlight doubtful words
    and play exactly their span.
    """

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Provenance(Record):
    """Where a label came from: enough to reproduce it or to refuse mixing two teachers.

    ``decoding`` holds the labeling options and the encoder precision the backend chose;
    ``toolkit_version`` is this package's version at labeling time; ``derived`` is the
    provenance of a teacher adapted from another (``Teacher.derived``), else None.
    """

    teacher: str
    weights_sha256: str
    backend: str
    decoding: dict[str, Any]
    toolkit_version: str
    derived: dict[str, Any] | None = None


@dataclass(frozen=True)
class TeacherLabel(Record):
    """A pseudo-label candidate: the teacher's transcript with every confidence signal.

    ``text`` is the teacher's transcript (so the file trains a NeMo model as is);
    ``ref_text`` keeps the manifest's transcript, when there was one, for measurement.
    ``temperature`` is the one whose output was kept after fallback; ``window_s`` the
    encoder context it was decoded in; ``language_prob`` the detector's probability of
    ``detected_language`` (None for English-only teachers); ``words`` the word timings when
    labeling asked for them (``--word-timestamps``), else empty.
    """

    id: str
    audio_filepath: str
    offset: float
    duration: float
    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    tokens: tuple[TokenScore, ...]
    provenance: Provenance
    language_prob: float | None = None
    detected_language: str | None = None
    window_s: float = 30.0
    ref_text: str | None = None
    speaker: str | None = None
    words: tuple[WordTiming, ...] = ()
    kind: ClassVar[str] = "label"


# --- quality (correct, filter, review) ---------------------------------------------------


@dataclass(frozen=True)
class Correction(Record):
    """One change to a label: which rule, the text before and after."""

    rule: str
    old: str
    new: str


@dataclass(frozen=True)
class Verdict(Record):
    """One rule's decision on one label.

    Attributes:
        rule: the rule's name (``no_speech``, ``low_confidence``...).
        keep: False drops the label.
        reason: what was seen, in words (empty when kept).
        value: the measured quantity, when the rule has one.
        threshold: the limit it was compared with.
    """

    rule: str
    keep: bool
    reason: str = ""
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class ReviewEntry(Record):
    """One human decision on a label: the audit trail of ``asr-distill review import``."""

    reviewer: str
    time: str
    decision: str  # "accept" or "reject"
    old: str
    new: str
    note: str = ""


@dataclass(frozen=True)
class PseudoLabel(Record):
    """A filtered, corrected pseudo-label; one JSON line of kept.jsonl or dropped.jsonl.

    ``text`` is the label to train on (a NeMo manifest's ``text``); ``teacher_text`` is
    what the teacher wrote. ``drop_reasons`` is empty for a kept label; its first entry is
    the primary reason. ``scores`` holds every computed confidence (None where undefined),
    ``score``/``score_name`` the one the filter used. ``word_confidence`` holds one
    confidence in [0, 1] per spoken word of ``teacher_text`` (its ``format_insensitive``
    words, as :func:`asr_distill.quality.consensus.word_confidences` gives them; None
    where unknown), empty where none was computed.
    """

    id: str
    audio_filepath: str
    offset: float
    duration: float
    text: str
    teacher_text: str
    language: str
    score_name: str
    score: float | None
    scores: dict[str, float | None]
    corrections: tuple[Correction, ...]
    filter_history: tuple[Verdict, ...]
    drop_reasons: tuple[str, ...]
    provenance: Provenance
    review: tuple[ReviewEntry, ...] = ()
    ref_text: str | None = None
    speaker: str | None = None
    word_confidence: tuple[float | None, ...] = ()
    words: tuple[WordTiming, ...] = ()

    @property
    def kept(self) -> bool:
        """Whether no rule dropped it."""
        return not self.drop_reasons


# --- evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class WerResult(Record):
    """Corpus-level error rates, summed over utterances (not averaged per utterance).

    Attributes:
        wer: word error rate in percent, (S + D + I) / ref_words * 100. ``inf`` when
            there are no reference words but the hypotheses have some.
        cer: character error rate in percent, over the normalised texts (spaces count).
        substitutions: word substitutions.
        deletions: word deletions.
        insertions: word insertions, including every hypothesis word of an utterance
            whose normalised reference is empty.
        ref_words: words in the normalised references.
        normaliser: name of the normaliser applied to both sides.
        utterances: number of (reference, hypothesis) pairs scored.
    """

    wer: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    normaliser: str
    utterances: int


@dataclass(frozen=True)
class UtteranceScore(Record):
    """One utterance scored: its texts before and after normalising, and its error counts.

    ``alignment`` holds jiwer's chunks as ``(op, ref_words, hyp_words)``.
    """

    id: str
    ref: str
    hyp: str
    ref_norm: str
    hyp_norm: str
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    duration: float = 0.0
    alignment: tuple[tuple[str, str, str], ...] = ()
    speaker: str | None = None

    @property
    def errors(self) -> int:
        """Substitutions, deletions and insertions together."""
        return self.substitutions + self.deletions + self.insertions


@dataclass(frozen=True)
class Interval(Record):
    """A bootstrap percentile interval of a WER in percent."""

    low: float
    high: float
    level: float
    resamples: int


@dataclass(frozen=True)
class GroupWer(Record):
    """WER of one slice of the test set (a speaker, a duration bucket)."""

    name: str
    utterances: int
    ref_words: int
    errors: int
    wer: float
    audio_s: float


@dataclass(frozen=True)
class Transcription(Record):
    """A model's hypotheses for a manifest and what they cost to produce.

    ``wall_s`` covers decoding (audio reading overlaps it), not loading the model.
    ``skipped`` counts manifest lines the decoder could not use (bad audio): they are
    left out of every WER and reported beside it.
    """

    model: str
    source: str
    params: int
    ids: tuple[str, ...]
    refs: tuple[str, ...]
    hyps: tuple[str, ...]
    durations: tuple[float, ...]
    speakers: tuple[str | None, ...]
    audio_s: float
    wall_s: float
    skipped: int = 0

    @property
    def rtfx(self) -> float:
        """Audio seconds per wall second of decoding."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class ModelResult(Record):
    """Everything measured about one model on one test manifest, under one normaliser.

    ``wer``/``cer`` and the S/D/I counts are in ``score`` (a :class:`WerResult`);
    ``other_wer`` holds the WER under further normalisers (name -> percent), so a
    format-insensitive and a Whisper-English figure can sit side by side.
    """

    model: str
    source: str
    manifest: str
    normaliser: str
    score: WerResult
    ci: Interval
    rtfx: float
    params: int
    audio_s: float
    wall_s: float
    skipped: int
    per_speaker: tuple[GroupWer, ...]
    per_duration: tuple[GroupWer, ...]
    other_wer: dict[str, float] = field(default_factory=dict)

    @property
    def wer(self) -> float:
        """The headline WER in percent, under ``normaliser``."""
        return self.score.wer


@dataclass(frozen=True)
class PairedComparison(Record):
    """Paired bootstrap of model A against model B on the same utterances.

    ``delta`` is WER(A) - WER(B) in points (negative: A is better), with its interval.
    ``p_value`` is the fraction of resamples in which A was *not* better than B
    (Koehn, 2004): below :data:`SIGNIFICANCE` A beats B beyond the test set's noise.
    """

    a: str
    b: str
    normaliser: str
    wer_a: float
    wer_b: float
    delta: float
    delta_ci: Interval
    p_value: float
    utterances: int

    @property
    def a_better(self) -> bool:
        """Whether A beats B beyond the noise: lower WER, significant at :data:`SIGNIFICANCE`."""
        return self.delta < 0 and self.p_value < SIGNIFICANCE


@dataclass(frozen=True)
class Evaluation(Record):
    """Several models on one manifest: their results and pairwise comparisons."""

    manifest: str
    normaliser: str
    results: tuple[ModelResult, ...]
    comparisons: tuple[PairedComparison, ...]
    out_dir: str | None = None


# --- serialisation -----------------------------------------------------------------------


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a plain dict (nested records become dicts), ready for ``json.dumps``.

    Properties and class variables (``kind``) are not fields and are not written.
    """
    return dataclasses.asdict(record)


def to_json(record: Any) -> str:
    """One JSON line (no newline); non-ASCII text is kept readable."""
    return json.dumps(to_dict(record), ensure_ascii=False, allow_nan=False)


def from_dict(cls: type[Any], d: Mapping[str, Any]) -> Any:
    """Build the record ``cls`` from a dict, as :func:`to_dict` or a JSON line gives it.

    Nested records, ``tuple[X, ...]``, ``list[X]``, ``dict[str, X]`` and ``X | None``
    are built from ``cls``'s type hints; other values are taken as they are. Keys
    ``cls`` does not know are ignored (a newer writer may add fields; a reader of
    ``result.json`` skips its derived ``wer``), and a missing ``tuple`` field without
    a default reads as empty (older files left empty lists out).

    Raises:
        TypeError: if ``d`` (or a nested value that should be a record) is not a
            mapping, or a field without a default is missing.
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"{cls.__name__} needs a mapping, got {type(d).__name__}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in d:
            kwargs[f.name] = _build(hints[f.name], d[f.name])
        elif _required(f) and typing.get_origin(hints[f.name]) is tuple:
            kwargs[f.name] = ()
    return cls(**kwargs)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _build(hint: Any, value: Any) -> Any:
    """``value`` (decoded JSON) as the type ``hint`` names, recursing into containers."""
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _build(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in value)
        return tuple(_build(a, v) for a, v in zip(args, value, strict=True)) if args else tuple(value)
    if origin is list:
        return [_build(args[0], v) for v in value] if args else list(value)
    if origin is dict:
        return {k: _build(args[1], v) for k, v in value.items()} if args else dict(value)
    return value


__all__ = [
    "SIGNIFICANCE",
    "Correction",
    "Evaluation",
    "GroupWer",
    "Interval",
    "ModelResult",
    "PairedComparison",
    "Provenance",
    "PseudoLabel",
    "Record",
    "ReviewEntry",
    "Skip",
    "TeacherLabel",
    "TokenScore",
    "Transcription",
    "UtteranceScore",
    "Utterance",
    "Verdict",
    "WordTiming",
    "WerResult",
    "from_dict",
    "to_dict",
    "to_json",
]
