"""Decoding options for labeling, checked in one place; the encoder-window policies they hold.

This module imports neither torch nor whisper: the command line reads its constants
(window steps, precisions, backends) for ``--help``, and the library reads the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable

WINDOW_S = 30.0  # Whisper's trained input length
SHORT_WINDOWS_S = (10.0, 15.0, 20.0, 30.0)  # encoder contexts tried, shortest that fits first
DEFAULT_MIN_WINDOW_S = 20.0  # the teacher's floor: writes letters and digits as the 30 s context does
WINDOW_HEADROOM_S = 0.5  # a clip takes a window at least this much longer than itself
TOKENS_BASE = 16  # token cap = TOKENS_BASE + TOKENS_PER_S * duration: a loop hits it early
TOKENS_PER_S = 12
ENTROPY_ALPHA = 0.33  # NeMo's default alpha for Tsallis/Renyi token entropies
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # encoder dtype (or CTranslate2 compute type)
BACKENDS = ("whisper", "faster-whisper")
ENGINES = ("local", "ray")  # where labeling runs: this machine's processes, or a Ray cluster
DEFAULT_TEACHER = "base"
DEFAULT_BATCH_SIZE = 8  # clips per batch on a CPU (the fastest size measured on 2 cores)
AUTO_BATCH = "auto"  # a batch size chosen from free GPU memory (``teacher.batching``)
MAX_AUTO_BATCH = 256  # measured on an H200: batch 512 was no faster (label_throughput_gpu)
DEFAULT_SEED = 0  # temperature-fallback sampling seed (per batch, see label.batch_seed)
DEFAULT_BEST_OF = 5  # candidates sampled at a temperature, the likeliest kept (transcribe's)


@dataclass(frozen=True)
class DecodePass:
    """One batched decoding pass of a backend: what ``Backend.generate`` needs besides features.

    ``temperature`` > 0 samples ``best_of`` candidates; 0 is greedy, or beam search with
    ``beam_size``. ``max_tokens`` caps the output (a loop hits it early); ``entropy_alpha``
    is the Tsallis/Rényi parameter of the token entropies; ``timestamps`` decodes in Whisper's
    timestamp mode (its written forms), whose tokens stay out of the text.
    """

    language: str
    task: str = "transcribe"
    temperature: float = 0.0
    beam_size: int | None = None
    best_of: int = DEFAULT_BEST_OF
    max_tokens: int = 224
    entropy_alpha: float = ENTROPY_ALPHA
    timestamps: bool = True


def check_precision(precision: str) -> None:
    """Refuse a precision outside ``PRECISIONS``, naming the ones there are."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def check_batch_size(batch_size: int | str) -> None:
    """Refuse a batch size that is neither a whole number >= 1 nor ``auto``."""
    if batch_size == AUTO_BATCH:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or {AUTO_BATCH!r}, got {batch_size!r}")


def parse_batch_size(text: str) -> int | str:
    """A command-line batch size: ``auto`` or a whole number >= 1."""
    value: int | str = text if text == AUTO_BATCH else int(text)
    check_batch_size(value)
    return value


@runtime_checkable
class EncoderWindows(Protocol):
    """Which encoder window (seconds) a clip of a given duration is padded to.

    Two policies exist, as two types: the teacher's ``ContextFloor`` (fixed steps with a
    floor) and a student's ``student.short_context.WindowPolicy`` (whole seconds).
    """

    def window_for(self, duration: float) -> float:
        """The window, in seconds, that a clip of ``duration`` seconds is padded to."""
        ...

    def as_fields(self) -> dict[str, Any]:
        """The policy as flat ``LabelOptions.as_dict`` entries (label provenance)."""
        ...


@dataclass(frozen=True)
class ContextFloor:
    """The teacher's encoder windows: the shortest that holds a clip, down to a floor.

    The shortest of ``SHORT_WINDOWS_S`` that holds a clip and is at least ``min_window_s``
    (positional embedding sliced), instead of padding every clip to 30 s: on CPU the encoder
    dominates and a 3 s clip pays for 30 s.

    The 20 s floor is measured (``benchmarks/label_throughput.py``): in a 10 s context
    Whisper base writes spelled letters and digit strings differently (about +1 to +2.6 WER
    points after Whisper's English normaliser on AN4 test + synthetic clips, none after the
    format-insensitive one); at 20 s it writes them as it does at 30 s; 15 s lies between.
    ``min_window_s=10`` is the fastest setting. ``short=False`` always uses 30 s.
    """

    min_window_s: float = DEFAULT_MIN_WINDOW_S
    short: bool = True

    def __post_init__(self) -> None:
        if self.min_window_s not in SHORT_WINDOWS_S:
            raise ValueError(f"min_window_s must be one of {SHORT_WINDOWS_S}, got {self.min_window_s}")

    def window_for(self, duration: float) -> float:
        """The shortest allowed window with ``WINDOW_HEADROOM_S`` to spare, else 30 s."""
        if not self.short:
            return WINDOW_S
        fits = (w for w in SHORT_WINDOWS_S if w >= self.min_window_s and duration <= w - WINDOW_HEADROOM_S)
        return next(fits, WINDOW_S)

    def as_fields(self) -> dict[str, Any]:
        """The two fields a teacher's label provenance has always had."""
        return {"short_context": self.short, "min_window_s": self.min_window_s}


FULL_CONTEXT = ContextFloor(short=False)  # every clip padded to Whisper's 30 s, as transcribe does


@dataclass(frozen=True)
class LabelOptions:
    """How the teacher decodes. Defaults follow ``whisper.transcribe`` where it has one.

    ``windows`` chooses each clip's encoder window (``ContextFloor`` for a teacher, a
    student's ``WindowPolicy`` for a student). Outputs that fail the checks, or that hit
    the token cap, are decoded again at 30 s before any temperature fallback, so the
    quality floor is that of plain Whisper.

    ``timestamps`` decodes in Whisper's timestamp mode, as ``transcribe`` does: the two
    modes write spelled letters and numbers differently ("G-M-E-F" vs "GMEF"), and the
    timestamp mode's forms are the better ones. Timestamp tokens are not kept in labels,
    and do not count in ``avg_logprob``. Both backends honour it.

    ``word_timestamps`` adds each word's start, end and probability to the label (openai-whisper's
    cross-attention alignment), at the cost of one more decoder pass per clip.
    """

    beam_size: int | None = None
    best_of: int = DEFAULT_BEST_OF
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    language: str | None = "en"
    task: str = "transcribe"
    windows: EncoderWindows = ContextFloor()
    max_tokens: int | None = None
    entropy_alpha: float = ENTROPY_ALPHA
    timestamps: bool = True
    word_timestamps: bool = False

    def __post_init__(self) -> None:
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1 or None for greedy, got {self.beam_size}")
        if not self.temperatures or self.temperatures[0] != 0.0 and self.beam_size is not None:
            raise ValueError("beam search needs temperatures starting at 0.0")
        if any(t < 0 or math.isnan(t) for t in self.temperatures):
            raise ValueError(f"temperatures must be >= 0, got {self.temperatures}")
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if not 0 < self.entropy_alpha < 1:
            raise ValueError(f"entropy_alpha must be in (0, 1), got {self.entropy_alpha}")
        if not isinstance(self.windows, EncoderWindows):
            raise TypeError(
                f"windows must be a ContextFloor or a student's WindowPolicy, got {self.windows!r}"
            )
        if self.best_of < 1:
            raise ValueError(f"best_of must be >= 1, got {self.best_of}")

    @classmethod
    def from_flags(
        cls,
        *,
        beam_size: int | None = None,
        language: str = "en",
        min_window: float = DEFAULT_MIN_WINDOW_S,
        full_context: bool = False,
        word_timestamps: bool = False,
        temperature: Sequence[float] | None = None,
        best_of: int = DEFAULT_BEST_OF,
    ) -> LabelOptions:
        """Options as ``asr-distill label`` and the pipeline's ``label`` keys name them.

        ``language="auto"`` detects per clip. ``temperature`` works as ``transcribe``'s: one
        value samples at it (the teacher at a temperature, a second opinion that differs from
        greedy where the model is unsure), several are the fallback ladder; None keeps greedy
        with transcribe's ladder.
        """
        return cls(
            beam_size=beam_size,
            best_of=best_of,
            temperatures=tuple(temperature) if temperature is not None else cls.temperatures,
            language=None if language == "auto" else language,
            windows=ContextFloor(min_window, short=not full_context),
            word_timestamps=word_timestamps,
        )

    def token_cap(self, duration: float) -> int:
        """Most tokens an utterance of this length may produce before it counts as a loop."""
        cap = TOKENS_BASE + math.ceil(TOKENS_PER_S * duration)
        return min(cap, self.max_tokens or 224)

    def window_for(self, duration: float) -> float:
        """The encoder window for a clip, as ``windows`` decides."""
        return self.windows.window_for(duration)

    def as_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready, for provenance: the window policy's entries take its place."""
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "windows":
                d.update(value.as_fields())
            else:
                d[f.name] = list(value) if f.name == "temperatures" else value
        return d


# Evaluation's guarded search, the same for every model and every runtime, so no comparison is
# won by one side's loops: greedy; an output that loops (token cap, compression ratio, a
# repeated n-gram: teacher.loops) is redone at 30 s and then up transcribe's temperature ladder
# (seeded), and the first try that does not loop is kept. A low average log-probability alone
# triggers nothing: that is the model's own answer, and it is scored as it is.
EVAL_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def guarded(options: LabelOptions) -> LabelOptions:
    """``options`` with evaluation's guarded search (:data:`EVAL_TEMPERATURES`, loops only).

    The encoder windows and timestamp mode are kept: they are the model's (a student's
    checkpoint names its own), the search is the evaluation's.
    """
    return replace(
        options,
        temperatures=EVAL_TEMPERATURES,
        beam_size=None,
        logprob_threshold=None,
        compression_ratio_threshold=LabelOptions.compression_ratio_threshold,
    )
