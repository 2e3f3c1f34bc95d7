"""Evaluation: transcribe a test manifest with one or more models and measure them.

Every number is computed from per-utterance error counts under one named normaliser
(:mod:`asr_distill.normalise`, the registry the filter and correction stages use), so a
corpus WER, its bootstrap confidence interval, the per-speaker and per-duration tables and
the per-utterance alignment file all agree with each other and with
:func:`asr_distill.metrics.word_error_rate`.

Speed is RTFx (seconds of audio per wall second of decoding, model loading excluded),
size is the parameter count. A paired bootstrap over utterances says whether one model
beats another on the same test set, or whether the gap is within the noise.

Evaluation leaves fixed artefacts per model (``hyps.jsonl``, ``alignment.jsonl``,
``alignment.txt``, ``result.json``) and, for several models, ``summary.json`` and
``table.md``: the icefall habit of decoding once and keeping every error inspectable.

The package in data-flow order: :mod:`.decoding` (transcribe and time a model, then
measure it), :mod:`.scoring` (per-utterance counts and breakdowns), :mod:`.bootstrap`
(confidence intervals, paired comparisons), :mod:`.tables` (markdown) and
:mod:`.artefacts` (the files); the records are in :mod:`asr_distill.records`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import DEFAULT_NORMALISER
from ..normalise import get_normaliser
from ..records import (
    SIGNIFICANCE,
    Evaluation,
    GroupWer,
    Interval,
    ModelResult,
    PairedComparison,
    Transcription,
    UtteranceScore,
)
from ..safe_load import load_checkpoint
from .artefacts import (
    load_evaluation,
    load_transcription,
    result_dict,
    save_transcription,
    slug,
    write_alignment,
    write_result,
    write_summary,
)
from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_wer, paired_bootstrap
from .decoding import EVAL_TEMPERATURES, measure, resolve_device, transcribe
from .scoring import (
    DURATION_EDGES_S,
    corpus_score,
    duration_bucket,
    per_duration,
    per_speaker,
    score_utterances,
)
from .tables import format_breakdown, format_comparisons, format_params, format_table

log = logging.getLogger(__name__)


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"student=runs/x/student.pt"`` -> ``("student", "runs/x/student.pt")``; a bare spec names itself.

    Lets a table say "teacher" instead of a cache path.
    """
    name, sep, model = spec.partition("=")
    if sep and name and model:
        return name, model
    return spec, spec


def check_model_files(models: Sequence[Any]) -> None:
    """Refuse, before anything is decoded or written, a model file that would run code when loaded.

    Args:
        models: as :func:`evaluate` takes them; only existing files are read (names and
            CTranslate2 folders pass).

    Raises:
        UnsafeCheckpointError: a checkpoint names Python objects to build or call (nothing is run).
        CheckpointError: a file that is not a readable torch checkpoint.
    """
    for m in models:
        _, model = parse_model_spec(m) if isinstance(m, str) else tuple(m)
        if isinstance(model, str | os.PathLike) and os.path.isfile(model):
            load_checkpoint(model)


def evaluate(
    models: Sequence[Any],
    manifest: str | Path,
    out_dir: str | Path | None = None,
    *,
    normaliser: str = DEFAULT_NORMALISER,
    other_normalisers: Sequence[str] = ("whisper_en",),
    batch_size: int = 8,
    backend: str = "whisper",
    device: str = "auto",
    options: dict[str, Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    reuse: bool = True,
    progress: bool = False,
) -> Evaluation:
    """Evaluate several models on one manifest and compare each with the first.

    Args:
        models: ``(name, model)`` pairs or specs ``"name=model"`` / ``"model"`` (see :func:`transcribe`).
        manifest: test manifest with reference ``text``.
        out_dir: gets ``<name>/`` per model, ``summary.json`` and ``table.md``; None keeps all in memory.
        normaliser: the normaliser every headline figure uses.
        other_normalisers: further normalisers whose WER is reported beside it.
        batch_size: clips per forward pass.
        backend: ``whisper`` or ``faster-whisper``.
        device: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the GPU when there is one).
        options: per-model ``LabelOptions`` by name (default: see :func:`transcribe`).
        resamples: bootstrap resamples behind every interval and comparison.
        level: the confidence level of the intervals.
        seed: the bootstrap's seed, so a rerun gives the same intervals.
        reuse: take hypotheses saved in ``out_dir`` over decoding again (their speed is the saved run's).
        progress: show a progress bar while decoding.

    Returns:
        An :class:`Evaluation`; ``comparisons`` pair every later model with the first (the
        reference system, e.g. the teacher) and the last with each other one.
    """
    pairs = _model_pairs(models, normaliser, other_normalisers)
    out = Path(out_dir) if out_dir is not None else None
    measured: dict[str, tuple[ModelResult, list[UtteranceScore]]] = {}
    for name, model in pairs:
        folder = out / slug(name) if out is not None else None
        t = _transcription(
            name,
            model,
            manifest,
            folder,
            reuse=reuse,
            batch_size=batch_size,
            backend=backend,
            device=device,
            options=(options or {}).get(name),
            progress=progress,
        )
        measured[name] = _measured(
            name, t, manifest, folder, normaliser, other_normalisers, resamples, level, seed
        )
    return _summary(manifest, normaliser, measured, out, resamples, level, seed)


def _measured(
    name: str,
    t: Transcription,
    manifest: str | Path,
    folder: Path | None,
    normaliser: str,
    other_normalisers: Sequence[str],
    resamples: int,
    level: float,
    seed: int,
) -> tuple[ModelResult, list[UtteranceScore]]:
    """Score one model's hypotheses, log its headline figures and keep its artefacts in ``folder``."""
    result, scores = measure(
        t,
        manifest,
        normaliser,
        other_normalisers=other_normalisers,
        resamples=resamples,
        level=level,
        seed=seed,
    )
    if folder is not None:
        write_alignment(scores, folder)
        write_result(result, folder)
    log.info(
        "%s: WER %.2f%% [%.2f, %.2f] (%s), RTFx %.1f, %d params",
        name,
        result.wer,
        result.ci.low,
        result.ci.high,
        normaliser,
        result.rtfx,
        result.params,
    )
    return result, scores


def _summary(
    manifest: str | Path,
    normaliser: str,
    measured: dict[str, tuple[ModelResult, list[UtteranceScore]]],
    out: Path | None,
    resamples: int,
    level: float,
    seed: int,
) -> Evaluation:
    """The evaluation of every measured model, with its paired comparisons; saved when ``out`` is set."""
    scores = {name: s for name, (_, s) in measured.items()}
    comparisons = _comparisons(list(measured), scores, normaliser, resamples, level, seed)
    results = tuple(r for r, _ in measured.values())
    ev = Evaluation(
        str(manifest), normaliser, results, tuple(comparisons), str(out) if out is not None else None
    )
    if out is not None:
        write_summary(ev, out)
    return ev


def _model_pairs(
    models: Sequence[Any], normaliser: str, other_normalisers: Sequence[str]
) -> list[tuple[str, Any]]:
    """``(name, model)`` per model, after checking the names and every normaliser.

    A typo fails here, before anything is decoded.
    """
    get_normaliser(normaliser)
    for n in other_normalisers:
        get_normaliser(n)
    pairs = [parse_model_spec(m) if isinstance(m, str) else tuple(m) for m in models]
    names = [p[0] for p in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}; name them with NAME=MODEL")
    return pairs


def _transcription(
    name: str,
    model: Any,
    manifest: str | Path,
    folder: Path | None,
    *,
    reuse: bool,
    batch_size: int,
    backend: str,
    device: str,
    options: Any,
    progress: bool,
) -> Transcription:
    """The model's hypotheses: saved ones from ``folder`` when ``reuse`` finds them whole.

    Otherwise a fresh decoding, saved to ``folder`` when there is one.
    """
    t = load_transcription(folder) if (folder is not None and reuse) else None
    if t is not None:
        log.info("evaluating %s: reusing the hypotheses in %s", name, folder)
        return t
    log.info("evaluating %s (%s) on %s", name, model, manifest)
    t = transcribe(
        model,
        manifest,
        name=name,
        batch_size=batch_size,
        backend=backend,
        device=device,
        options=options,
        progress=progress,
    )
    if folder is not None:
        save_transcription(t, folder)
    return t


def _comparisons(names, all_scores, normaliser, resamples, level, seed) -> list[PairedComparison]:
    wanted: list[tuple[str, str]] = [(n, names[0]) for n in names[1:]]
    last = names[-1] if len(names) > 2 else None
    if last is not None:
        wanted += [(last, n) for n in names[1:-1]]
    return [
        paired_bootstrap(
            all_scores[a],
            all_scores[b],
            names=(a, b),
            normaliser=normaliser,
            resamples=resamples,
            level=level,
            seed=seed,
        )
        for a, b in wanted
    ]


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "DURATION_EDGES_S",
    "EVAL_TEMPERATURES",
    "SIGNIFICANCE",
    "Evaluation",
    "GroupWer",
    "Interval",
    "ModelResult",
    "PairedComparison",
    "Transcription",
    "UtteranceScore",
    "bootstrap_wer",
    "check_model_files",
    "corpus_score",
    "duration_bucket",
    "evaluate",
    "format_breakdown",
    "format_comparisons",
    "format_params",
    "format_table",
    "load_evaluation",
    "load_transcription",
    "measure",
    "paired_bootstrap",
    "parse_model_spec",
    "per_duration",
    "per_speaker",
    "resolve_device",
    "result_dict",
    "save_transcription",
    "score_utterances",
    "transcribe",
    "write_alignment",
    "write_summary",
]
