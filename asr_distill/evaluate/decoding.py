"""Decode a test manifest with a model, timed, and measure the hypotheses.

:func:`transcribe` runs the labeler's own decoding loop (:func:`asr_distill.label.label_batches`)
so a model is measured as it labels; :func:`measure` turns its hypotheses into a
:class:`~asr_distill.records.ModelResult`. Speed is RTFx (seconds of audio per wall
second of decoding, model loading excluded), size is the parameter count.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..metrics import DEFAULT_NORMALISER, word_error_rate
from ..records import ModelResult, TeacherLabel, Transcription, UtteranceScore
from ..safe_load import load_checkpoint
from ..teacher.options import AUTO_BATCH, EVAL_TEMPERATURES, guarded
from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_wer
from .options import Scoring
from .scoring import (
    MAX_SCORED_WORDS,
    corpus_score,
    per_duration,
    per_speaker,
    score_utterances,
    too_long_to_score,
)

log = logging.getLogger(__name__)


def _decode_options(teacher, options):
    """Decoding options for a model: the caller's, else evaluation's in the windows it names."""
    if options is not None:
        return options
    from ..student.short_context import evaluation_options

    source = Path(str(teacher.source))
    return evaluation_options(_stored_description(source), source)


def _stored_description(source: Path) -> dict | None:
    """An exported student's self-description: a ``.pt``'s ``asr_distill`` key, an ONNX folder's file."""
    from ..student.onnx import is_onnx_export, read_description

    if is_onnx_export(source):
        return read_description(source)
    if source.suffix != ".pt" or not source.is_file():
        return None
    ckpt = load_checkpoint(source)
    return ckpt.get("asr_distill") if isinstance(ckpt, dict) else None


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def transcribe(
    model: Any,
    manifest: str | Path,
    *,
    name: str | None = None,
    batch_size: int | str = AUTO_BATCH,
    options: Any = None,
    backend: str = "whisper",
    device: str = "auto",
    progress: bool = False,
    precision: str = "auto",
) -> Transcription:
    """Decode every utterance of ``manifest`` with ``model`` and time it.

    Args:
        model: anything :func:`asr_distill.load_teacher` resolves (``"base"``,
            ``"tiny.en"``, an exported student ``.pt``, a CTranslate2 folder) or a loaded
            ``Teacher``; or an ONNX export folder (run by ONNX Runtime in the same decoding
            loop) or a GGML file (run by whisper.cpp, ``student.ggml``).
        manifest: NeMo manifest whose ``text`` is the reference.
        name: the model's display name (default: its resolved name).
        batch_size: clips per forward pass, or ``auto`` (see ``label.LabelRun``).
        options: ``LabelOptions``; default: the guarded search (:func:`guarded`) in the
            encoder windows a student checkpoint names, else the labeler's short windows.
        backend: ``whisper`` or ``faster-whisper``.
        device: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the GPU when there is one).
        progress: show a progress bar with the rate.
        precision: the encoder's dtype (``auto``, ``fp32``, ``bf16``, ``fp16``), as in labeling.
    """
    from ..label import LabelRun, label_batches
    from ..student.onnx import is_onnx_export, load_onnx
    from ..teacher import Teacher, load_teacher

    if is_ggml_model(model):
        from ..student.ggml import transcribe_ggml

        return transcribe_ggml(model, manifest, name=name, progress=progress)
    engine = None
    if is_onnx_export(model):  # its own engine (ONNX Runtime) in the labeler's decoding loop
        teacher, engine = load_onnx(model)
    else:
        teacher = model if isinstance(model, Teacher) else load_teacher(model, device=resolve_device(device))
    opts = _decode_options(teacher, options)
    run = LabelRun(teacher, backend, opts, batch_size, progress=progress, precision=precision)
    batches = label_batches(manifest, run, engine=engine)
    labels, skipped, wall = _timed_labels(batches, manifest)
    durs = [lab.duration for lab in labels]
    return Transcription(
        model=name or teacher.name,
        source=str(teacher.source),
        params=teacher.n_params,
        ids=tuple(lab.id for lab in labels),
        refs=tuple(lab.ref_text for lab in labels),
        hyps=tuple(lab.text for lab in labels),
        durations=tuple(durs),
        speakers=tuple(lab.speaker for lab in labels),
        audio_s=round(sum(durs), 3),
        wall_s=round(wall, 3),
        skipped=skipped,
    )


def model_problem(model: Any) -> str | None:
    """Why :func:`transcribe` could not load ``model``, found without loading it (None: it could).

    Everything ``load_teacher`` takes, an ONNX export folder, a GGML file, or a loaded
    ``Teacher``; for failing a long evaluation before its first model, not after it.
    """
    from ..student.onnx import is_onnx_export
    from ..teacher.resolve import model_problem as teacher_problem

    if not isinstance(model, str | os.PathLike) or is_onnx_export(model):
        return None
    return teacher_problem(model)


def is_ggml_model(model: Any) -> bool:
    """Whether ``model`` is a whisper.cpp GGML file (decoded by ``student.ggml``, not by PyTorch)."""
    if not isinstance(model, str | os.PathLike) or not os.path.isfile(model):
        return False
    from ..student.ggml import is_ggml

    return is_ggml(model)


def _timed_labels(batches: Iterable, manifest: str | Path) -> tuple[list[TeacherLabel], int, float]:
    """Run the decoding: the labels that have a reference, how many clips were skipped, wall seconds.

    Labels without a reference and skipped clips are left out of the score, each with a warning.
    """
    labels, skipped, missing_refs = [], 0, 0
    start = time.perf_counter()
    for batch, skips in batches:
        skipped += len(skips)
        for lab in batch:
            if lab.ref_text is None:
                missing_refs += 1
            else:
                labels.append(lab)
    wall = time.perf_counter() - start
    if missing_refs:
        log.warning("%s: %d utterances have no reference text and are not scored", manifest, missing_refs)
    if skipped:
        log.warning(
            "%s: %d utterances could not be decoded (bad audio) and are not scored", manifest, skipped
        )
    return labels, skipped, wall


def measure(
    t: Transcription,
    manifest: str | Path,
    normaliser: str | Scoring = DEFAULT_NORMALISER,
    *,
    other_normalisers: Sequence[str] = (),
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> tuple[ModelResult, list[UtteranceScore]]:
    """Score a transcription: corpus WER/CER, bootstrap CI, breakdowns, alignments.

    ``normaliser`` may be a whole :class:`Scoring`; the keywords then go unused.
    """
    sc = (
        normaliser
        if isinstance(normaliser, Scoring)
        else Scoring(normaliser, other_normalisers, resamples, level, seed)
    )
    normaliser = sc.normaliser
    t = _scorable(t)
    if not t.ids:
        raise ValueError(f"{t.model}: nothing to score in {manifest} (no utterance with a reference)")
    scores = score_utterances(
        t.refs, t.hyps, normaliser, ids=t.ids, durations=t.durations, speakers=t.speakers
    )
    other = {
        n: round(word_error_rate(t.refs, t.hyps, n).wer, 4) for n in sc.other_normalisers if n != normaliser
    }
    result = ModelResult(
        model=t.model,
        source=t.source,
        manifest=str(manifest),
        normaliser=normaliser,
        score=corpus_score(scores, normaliser),
        ci=bootstrap_wer(scores, sc.resamples, sc.level, sc.seed),
        rtfx=round(t.rtfx, 3),
        params=t.params,
        audio_s=t.audio_s,
        wall_s=t.wall_s,
        skipped=t.skipped,
        per_speaker=per_speaker(scores),
        per_duration=per_duration(scores),
        other_wer=other,
    )
    return result, scores


def _scorable(t: Transcription) -> Transcription:
    """``t`` without the utterances too long to align (a recorded skip each, with a warning)."""
    keep = [not (too_long_to_score(r) or too_long_to_score(h)) for r, h in zip(t.refs, t.hyps, strict=True)]
    if all(keep):
        return t
    dropped = [i for i, k in zip(t.ids, keep, strict=True) if not k]
    log.warning(
        "%s: %d utterances have a reference or hypothesis over %d words, too long to align, and "
        "are not scored: %s",
        t.model,
        len(dropped),
        MAX_SCORED_WORDS,
        ", ".join(repr(i) for i in dropped[:5]),
    )

    def kept(values):
        return tuple(v for v, k in zip(values, keep, strict=True) if k)

    return dataclasses.replace(
        t,
        ids=kept(t.ids),
        refs=kept(t.refs),
        hyps=kept(t.hyps),
        durations=kept(t.durations),
        speakers=kept(t.speakers),
        skipped=t.skipped + len(dropped),
    )


__all__ = [
    "EVAL_TEMPERATURES",
    "guarded",
    "is_ggml_model",
    "measure",
    "model_problem",
    "resolve_device",
    "transcribe",
]
