"""Evaluation: transcribe named test sets with one or more models and measure them.

Every number is computed from per-utterance error counts under one named normaliser
(:mod:`asr_distill.normalise`, the registry the filter and correction stages use), so a
corpus WER, its bootstrap confidence interval, the per-speaker and per-duration tables and
the per-utterance alignment file all agree with each other and with
:func:`asr_distill.metrics.word_error_rate`.

Speed is RTFx (seconds of audio per wall second of decoding, model loading excluded),
size is the parameter count. A paired bootstrap over utterances says whether one model
beats another on the same test set, or whether the gap is within the noise. Every model is
measured on every set (``in_domain`` and any out-of-domain ones), decoded by the same
guarded search (:func:`.decoding.guarded`: no side wins by the other's repetition loops);
a student significantly worse than the model it started from on any set is a regression.

Evaluation leaves fixed artefacts per model (``hyps.jsonl``, ``alignment.jsonl``,
``alignment.txt``, ``result.json``) and, for several models, ``summary.json`` and
``table.md``: the icefall habit of decoding once and keeping every error inspectable.

The package in data-flow order: :mod:`.options` (scoring and decoding settings),
:mod:`.decoding` (transcribe and time a model, then measure it), :mod:`.scoring`
(per-utterance counts and breakdowns), :mod:`.bootstrap` (confidence intervals, paired
comparisons), :mod:`.sets` (named test sets, baselines, regressions), :mod:`.tables`
(markdown) and :mod:`.artefacts` (the files); the records are in :mod:`asr_distill.records`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
from ..teacher.errors import TeacherNotFoundError
from .artefacts import (
    TIMING_NAME,
    decoding_inputs,
    format_suite,
    load_evaluation,
    load_suite,
    load_transcription,
    model_folder,
    result_dict,
    save_transcription,
    saved_inputs,
    write_alignment,
    write_result,
    write_summary,
)
from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_wer, paired_bootstrap
from .decoding import (
    EVAL_TEMPERATURES,
    guarded,
    is_ggml_model,
    measure,
    model_problem,
    resolve_device,
    transcribe,
)
from .options import Decoding, Scoring
from .scoring import (
    DURATION_EDGES_S,
    corpus_score,
    duration_bucket,
    per_duration,
    per_speaker,
    score_utterances,
)
from .sets import (
    IN_DOMAIN,
    EvaluationSuite,
    Regression,
    available,
    find_regressions,
    named_sets,
    parse_set_spec,
    resolve_baselines,
    started_from,
)
from .tables import (
    REGRESSION_MARK,
    format_breakdown,
    format_comparisons,
    format_params,
    format_regressions,
    format_sets,
    format_table,
    insertion_rate,
)

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
        models: as :func:`evaluate` takes them; only existing files are read (names,
            CTranslate2 and ONNX folders pass; a GGML file is not a torch file, and its
            reader checks it).

    Raises:
        UnsafeCheckpointError: a checkpoint names Python objects to build or call (nothing is run).
        CheckpointError: a file that is not a readable torch checkpoint.
    """
    for m in models:
        _, model = parse_model_spec(m) if isinstance(m, str) else tuple(m)
        if isinstance(model, str | os.PathLike) and os.path.isfile(model) and not is_ggml_model(model):
            load_checkpoint(model)


def evaluate(
    models: Sequence[Any],
    sets: str | Path | Mapping[str, str | Path],
    out_dir: str | Path | None = None,
    *,
    scoring: Scoring | None = None,
    decoding: Decoding | None = None,
    baselines: Mapping[str, str] | None = None,
    reuse: bool = True,
) -> EvaluationSuite:
    """Evaluate several models on named test sets and compare them, set by set.

    Args:
        models: ``(name, model)`` pairs or specs ``"name=model"`` / ``"model"`` (see :func:`transcribe`).
        sets: ``{name: manifest}`` with reference ``text``: ``in_domain`` plus any out-of-domain
            sets; a single manifest is the in-domain set. An out-of-domain set whose manifest
            is missing is skipped, its reason logged and recorded.
        out_dir: gets a folder per model and set (:func:`model_folder`), ``summary.json`` and
            ``table.md``; None keeps all in memory.
        scoring: normalisers and bootstrap settings (default :class:`Scoring`).
        decoding: how every model decodes (default :class:`Decoding`: the guarded search).
        baselines: model name -> the evaluated model it started from, whose significant
            win on any set is a regression; None reads it from each student's checkpoint.
        reuse: take hypotheses saved in ``out_dir`` over decoding again (their speed is the saved run's).

    Returns:
        An :class:`EvaluationSuite`: per set, ``comparisons`` pair every later model with the
        first (the reference system, e.g. the teacher) and the last with each other one.

    Raises:
        TeacherNotFoundError: some models cannot be loaded (:func:`model_problem`), all named
            before any is decoded.
        FileNotFoundError: the in-domain (first) set's manifest is missing.
        ValueError: repeated model names, an unknown normaliser or baseline.
    """
    scoring, decoding = scoring or Scoring(), decoding or Decoding()
    pairs = _model_pairs(models)
    unloadable = [f"  {name}: {why}" for name, model in pairs if (why := model_problem(model))]
    if unloadable:
        raise TeacherNotFoundError(
            "nothing decoded; these models cannot be loaded:\n" + "\n".join(unloadable)
        )
    present, skipped = available(named_sets(sets))
    base = resolve_baselines(pairs, baselines)
    out = Path(out_dir) if out_dir is not None else None
    evaluations, scores = {}, {}
    for set_name, manifest in present.items():
        measured: dict[str, tuple[ModelResult, list[UtteranceScore]]] = {}
        for name, model in pairs:
            folder = model_folder(out, name, set_name) if out is not None else None
            t = _transcription(name, model, manifest, folder, decoding, reuse)
            measured[name] = _measured(name, t, manifest, folder, scoring)
        evaluations[set_name] = _summary(manifest, measured, out, scoring)
        scores[set_name] = {name: s for name, (_, s) in measured.items()}
    regressions = find_regressions(scores, base, scoring)
    suite = EvaluationSuite(evaluations, tuple(regressions), base, skipped, str(out) if out else None)
    if out is not None:
        write_summary(suite, out)
    return suite


def _measured(
    name: str, t: Transcription, manifest: str | Path, folder: Path | None, scoring: Scoring
) -> tuple[ModelResult, list[UtteranceScore]]:
    """Score one model's hypotheses, log its headline figures and keep its artefacts in ``folder``."""
    result, scores = measure(t, manifest, scoring)
    if folder is not None:
        write_alignment(scores, folder)
        write_result(result, folder)
    log.info(
        "%s on %s: WER %.2f%% [%.2f, %.2f] (%s), insertions %.2f%%, RTFx %.1f, %d params",
        name,
        manifest,
        result.wer,
        result.ci.low,
        result.ci.high,
        scoring.normaliser,
        insertion_rate(result.score),
        result.rtfx,
        result.params,
    )
    return result, scores


def _summary(
    manifest: str | Path,
    measured: dict[str, tuple[ModelResult, list[UtteranceScore]]],
    out: Path | None,
    scoring: Scoring,
) -> Evaluation:
    """One set's evaluation of every measured model, with its paired comparisons."""
    scores = {name: s for name, (_, s) in measured.items()}
    comparisons = _comparisons(list(measured), scores, scoring)
    results = tuple(r for r, _ in measured.values())
    where = str(out) if out is not None else None
    return Evaluation(str(manifest), scoring.normaliser, results, tuple(comparisons), where)


def _model_pairs(models: Sequence[Any]) -> list[tuple[str, Any]]:
    """``(name, model)`` per model, after checking the names: a clash fails before anything is decoded."""
    pairs = [parse_model_spec(m) if isinstance(m, str) else tuple(m) for m in models]
    names = [p[0] for p in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}; name them with NAME=MODEL")
    return pairs


def _transcription(
    name: str, model: Any, manifest: str | Path, folder: Path | None, decoding: Decoding, reuse: bool
) -> Transcription:
    """The model's hypotheses: saved ones from ``folder``, whole and from the same inputs, if ``reuse``.

    The same inputs are the manifest's bytes, the model's files and the options; otherwise a
    fresh decoding, saved to ``folder`` when there is one.
    """
    options = decoding.options.get(name)
    inputs = decoding_inputs(model, manifest, options, decoding.backend) if folder is not None else None
    t = load_transcription(folder, inputs) if (folder is not None and reuse) else None
    if t is not None:
        log.info("evaluating %s: reusing the hypotheses in %s", name, folder)
        return t
    if folder is not None and reuse and (folder / TIMING_NAME).is_file():
        log.info("evaluating %s: the hypotheses in %s are from other inputs; decoding again", name, folder)
    log.info("evaluating %s (%s) on %s", name, model, manifest)
    t = transcribe(
        model,
        manifest,
        name=name,
        batch_size=decoding.batch_size,
        backend=decoding.backend,
        device=decoding.device,
        options=options,
        progress=decoding.progress,
    )
    if folder is not None:
        save_transcription(t, folder, inputs)
    return t


def _comparisons(names: list[str], all_scores, scoring: Scoring) -> list[PairedComparison]:
    wanted: list[tuple[str, str]] = [(n, names[0]) for n in names[1:]]
    last = names[-1] if len(names) > 2 else None
    if last is not None:
        wanted += [(last, n) for n in names[1:-1]]
    return [scoring.paired(all_scores[a], all_scores[b], names=(a, b)) for a, b in wanted]


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "DURATION_EDGES_S",
    "EVAL_TEMPERATURES",
    "IN_DOMAIN",
    "REGRESSION_MARK",
    "SIGNIFICANCE",
    "Decoding",
    "Evaluation",
    "EvaluationSuite",
    "GroupWer",
    "Interval",
    "ModelResult",
    "PairedComparison",
    "Regression",
    "Scoring",
    "Transcription",
    "UtteranceScore",
    "available",
    "bootstrap_wer",
    "check_model_files",
    "corpus_score",
    "duration_bucket",
    "evaluate",
    "find_regressions",
    "format_breakdown",
    "format_comparisons",
    "format_params",
    "format_regressions",
    "format_sets",
    "format_suite",
    "format_table",
    "guarded",
    "insertion_rate",
    "load_evaluation",
    "load_suite",
    "load_transcription",
    "measure",
    "model_folder",
    "named_sets",
    "paired_bootstrap",
    "parse_model_spec",
    "parse_set_spec",
    "per_duration",
    "per_speaker",
    "resolve_baselines",
    "resolve_device",
    "result_dict",
    "save_transcription",
    "saved_inputs",
    "score_utterances",
    "started_from",
    "transcribe",
    "write_alignment",
    "write_summary",
]
