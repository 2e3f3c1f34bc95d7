"""Typed records that the stages exchange, one JSON line each.

Records are frozen: a stage never edits another stage's record, it makes a new one
(``dataclasses.replace``). Field names follow NeMo manifests (``audio_filepath``,
``duration``, ``offset``, ``text``) and openai-whisper's ``DecodingResult``
(``avg_logprob``, ``no_speech_prob``, ``compression_ratio``), so a label file is
both a NeMo training manifest and a full record of the teacher's confidence.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Utterance:
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
class Skip:
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


@dataclass(frozen=True)
class TokenScore:
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
class Provenance:
    """Where a label came from: enough to reproduce it or to refuse mixing two teachers."""

    teacher: str
    weights_sha256: str
    backend: str
    decoding: dict[str, Any]
    toolkit_version: str


@dataclass(frozen=True)
class TeacherLabel:
    """A pseudo-label candidate: the teacher's transcript with every confidence signal.

    ``text`` is the teacher's transcript (so the file trains a NeMo model as is);
    ``ref_text`` keeps the manifest's transcript, when there was one, for measurement.
    ``temperature`` is the one whose output was kept after fallback; ``window_s`` the
    encoder context it was decoded in; ``language_prob`` the detector's probability of
    ``detected_language`` (None for English-only teachers).
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
    kind: ClassVar[str] = "label"

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherLabel:
        d = dict(d)
        d["tokens"] = tuple(TokenScore(**t) for t in d.get("tokens", ()))
        d["provenance"] = Provenance(**d["provenance"])
        return cls(**{k: v for k, v in d.items() if k in _field_names(cls)})


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def to_dict(record: Any) -> dict[str, Any]:
    """A record as a plain dict (tuples become lists), ready for ``json.dumps``."""
    return dataclasses.asdict(record)


def to_json(record: Any) -> str:
    """One JSON line (no newline); non-ASCII text is kept readable."""
    return json.dumps(to_dict(record), ensure_ascii=False, allow_nan=False)


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, ignoring keys it does not know (forward compatible)."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    return cls(**{k: v for k, v in d.items() if k in _field_names(cls)})


__all__ = [
    "Provenance",
    "Skip",
    "TeacherLabel",
    "TokenScore",
    "Utterance",
    "from_dict",
    "to_dict",
    "to_json",
]
