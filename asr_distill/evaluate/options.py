"""The two groups of evaluation settings: how hypotheses are scored and how models decode.

Each is one frozen value passed whole, so the command line, the pipeline and Python build it
once and every test set and model is measured with the same one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..metrics import DEFAULT_NORMALISER
from ..normalise import get_normaliser
from ..records import PairedComparison, UtteranceScore
from ..teacher.options import AUTO_BATCH, check_batch_size
from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, paired_bootstrap


@dataclass(frozen=True)
class Scoring:
    """How hypotheses become figures: the normalisers, and the bootstrap behind every interval.

    Attributes:
        normaliser: the normaliser every headline figure uses, on references and hypotheses alike.
        other_normalisers: further normalisers whose WER is reported beside it.
        resamples: bootstrap resamples behind every interval and comparison.
        level: the confidence level of the intervals.
        seed: the bootstrap's seed, so a rerun gives the same intervals.
    """

    normaliser: str = DEFAULT_NORMALISER
    other_normalisers: tuple[str, ...] = ("whisper_en",)
    resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        """A typo in a normaliser or a bad bootstrap setting fails here, before anything is decoded."""
        object.__setattr__(self, "other_normalisers", tuple(self.other_normalisers))
        for name in (self.normaliser, *self.other_normalisers):
            get_normaliser(name)
        if self.resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {self.resamples}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def paired(
        self, a: Sequence[UtteranceScore], b: Sequence[UtteranceScore], names: tuple[str, str]
    ) -> PairedComparison:
        """The paired bootstrap of model ``a`` against ``b`` under these settings."""
        return paired_bootstrap(
            a,
            b,
            names=names,
            normaliser=self.normaliser,
            resamples=self.resamples,
            level=self.level,
            seed=self.seed,
        )


@dataclass(frozen=True)
class Decoding:
    """How every model decodes a test set.

    Attributes:
        batch_size: clips per forward pass; ``auto``: 8 on a CPU, as many as the free
            memory holds on a GPU (``teacher.batching``).
        backend: ``whisper`` or ``faster-whisper``.
        device: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the GPU when there is one).
        progress: show a progress bar while decoding.
        options: ``LabelOptions`` per model name; a model not named gets the evaluation's
            guarded search (:func:`asr_distill.evaluate.decoding.eval_options`).
    """

    batch_size: int | str = AUTO_BATCH
    backend: str = "whisper"
    device: str = "auto"
    progress: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)


__all__ = ["Decoding", "Scoring"]
