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
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .jsonl import atomic_write_jsonl, atomic_write_text, read_jsonl
from .metrics import DEFAULT_NORMALISER, PERCENT, WerResult, word_error_rate
from .normalise import get_normaliser

log = logging.getLogger(__name__)

# Upper edges (seconds) of the duration buckets; the last bucket is open-ended. Short
# clips are where Whisper's 30 s padding hurts speed and where students loop, so the
# low end is split finely.
DURATION_EDGES_S: tuple[float, ...] = (2.0, 4.0, 8.0, 15.0, 30.0)
DEFAULT_RESAMPLES = 1000  # bootstrap resamples: the CI's ends move by < 0.1 point beyond this
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
SIGNIFICANCE = 0.05  # a paired difference is called significant below this p-value
RESAMPLE_CHUNK = 100  # resamples drawn at a time: memory stays ~ chunk x utterances
UNKNOWN_SPEAKER = "unknown"
RESULT_NAME = "result.json"
HYPS_NAME = "hyps.jsonl"
TIMING_NAME = "timing.json"
ALIGNMENT_NAME = "alignment.jsonl"
ALIGNMENT_TEXT_NAME = "alignment.txt"
SUMMARY_NAME = "summary.json"
TABLE_NAME = "table.md"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


# --- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceScore:
    """One utterance scored: its texts before and after normalising, its error counts, and
    the word alignment (jiwer's chunks as ``(op, ref_words, hyp_words)``)."""

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
    speaker: str | None = None
    alignment: tuple[tuple[str, str, str], ...] = ()

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval of a WER in percent."""

    low: float
    high: float
    level: float
    resamples: int


@dataclass(frozen=True)
class GroupWer:
    """WER of one slice of the test set (a speaker, a duration bucket)."""

    name: str
    utterances: int
    ref_words: int
    errors: int
    wer: float
    audio_s: float


@dataclass(frozen=True)
class Transcription:
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
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class ModelResult:
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
        return self.score.wer


@dataclass(frozen=True)
class PairedComparison:
    """Paired bootstrap of model A against model B on the same utterances.

    ``delta`` is WER(A) - WER(B) in points (negative: A is better), with its interval.
    ``p_value`` is the fraction of resamples in which A was *not* better than B
    (Koehn, 2004): below ``SIGNIFICANCE`` A beats B beyond the test set's noise.
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
        return self.delta < 0 and self.p_value < SIGNIFICANCE


@dataclass(frozen=True)
class Evaluation:
    """Several models on one manifest: their results and pairwise comparisons."""

    manifest: str
    normaliser: str
    results: tuple[ModelResult, ...]
    comparisons: tuple[PairedComparison, ...]
    out_dir: str | None = None


# --- scoring -----------------------------------------------------------------------------


def score_utterances(
    refs: Sequence[str],
    hyps: Sequence[str],
    normaliser: str = DEFAULT_NORMALISER,
    *,
    ids: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    speakers: Sequence[str | None] | None = None,
) -> list[UtteranceScore]:
    """Align and count errors utterance by utterance, after normalising both sides.

    An utterance whose normalised reference is empty scores every hypothesis word as
    an insertion, as :func:`asr_distill.metrics.word_error_rate` does, so sums of these
    counts reproduce its corpus figures exactly.

    Raises:
        ValueError: if the sequences differ in length or the normaliser is unknown.
    """
    n = len(refs)
    for name, seq in (("hyps", hyps), ("ids", ids), ("durations", durations), ("speakers", speakers)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{n} references but {len(seq)} {name}; they must pair up")
    norm = get_normaliser(normaliser)
    import jiwer

    ids = ids if ids is not None else [str(i) for i in range(n)]
    r_norm = [norm(r) for r in refs]
    h_norm = [norm(h) for h in hyps]
    scored = [i for i in range(n) if r_norm[i].split()]
    aligned: dict[int, tuple[int, int, int, tuple]] = {}
    if scored:
        out = jiwer.process_words([r_norm[i] for i in scored], [h_norm[i] for i in scored])
        for k, i in enumerate(scored):
            aligned[i] = _count_chunks(out.alignments[k], out.references[k], out.hypotheses[k])
    scores = []
    for i in range(n):
        if i in aligned:
            s, d, ins, chunks = aligned[i]
        else:
            words = h_norm[i].split()
            s, d, ins = 0, 0, len(words)
            chunks = (("insert", "", " ".join(words)),) if words else ()
        scores.append(UtteranceScore(
            id=str(ids[i]), ref=refs[i], hyp=hyps[i], ref_norm=r_norm[i], hyp_norm=h_norm[i],
            substitutions=s, deletions=d, insertions=ins, ref_words=len(r_norm[i].split()),
            duration=float(durations[i]) if durations is not None else 0.0,
            speaker=speakers[i] if speakers is not None else None, alignment=chunks,
        ))
    return scores


def _count_chunks(chunks, ref: list[str], hyp: list[str]) -> tuple[int, int, int, tuple]:
    s = d = ins = 0
    out = []
    for c in chunks:
        r = ref[c.ref_start_idx:c.ref_end_idx]
        h = hyp[c.hyp_start_idx:c.hyp_end_idx]
        if c.type == "substitute":
            s += len(r)
        elif c.type == "delete":
            d += len(r)
        elif c.type == "insert":
            ins += len(h)
        out.append((c.type, " ".join(r), " ".join(h)))
    return s, d, ins, tuple(out)


def _rate(errors: int, words: int) -> float:
    if words:
        return PERCENT * errors / words
    return 0.0 if errors == 0 else math.inf


def _arrays(scores: Sequence[UtteranceScore]) -> tuple[np.ndarray, np.ndarray]:
    errors = np.array([s.errors for s in scores], dtype=np.int64)
    words = np.array([s.ref_words for s in scores], dtype=np.int64)
    return errors, words


def _resampled_indices(n: int, resamples: int, seed: int):
    """Yield index arrays of shape ``(chunk, n)``: the same stream for the same seed, so
    two calls with one seed draw identical resamples (what makes a bootstrap *paired*)."""
    rng = np.random.default_rng(seed)
    left = resamples
    while left > 0:
        k = min(RESAMPLE_CHUNK, left)
        yield rng.integers(0, n, size=(k, n))
        left -= k


def _percentiles(values: np.ndarray, level: float, resamples: int) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(round(float(low), 4), round(float(high), 4), level, resamples)


def _check_bootstrap(n: int, resamples: int, level: float) -> None:
    if n == 0:
        raise ValueError("cannot bootstrap an empty test set")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_wer(
    scores: Sequence[UtteranceScore],
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Percentile bootstrap interval of the corpus WER, resampling whole utterances.

    Utterances, not words, are the unit: errors cluster within an utterance (one
    misheard name costs several words), and resampling words would make the interval
    too narrow.
    """
    _check_bootstrap(len(scores), resamples, level)
    errors, words = _arrays(scores)
    values = []
    for idx in _resampled_indices(len(scores), resamples, seed):
        w = words[idx].sum(axis=1)
        values.append(PERCENT * errors[idx].sum(axis=1) / np.maximum(w, 1))
    return _percentiles(np.concatenate(values), level, resamples)


def paired_bootstrap(
    a: Sequence[UtteranceScore],
    b: Sequence[UtteranceScore],
    *,
    names: tuple[str, str] = ("A", "B"),
    normaliser: str = DEFAULT_NORMALISER,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Compare two models on the same utterances with one set of resamples.

    Both score lists are matched by utterance id; utterances only one model has (one
    decoder skipped them) are left out and the count used is reported.

    Raises:
        ValueError: if the two lists share no utterance ids.
    """
    b_by_id = {s.id: s for s in b}
    pairs = [(s, b_by_id[s.id]) for s in a if s.id in b_by_id]
    _check_bootstrap(len(pairs), resamples, level)
    ea, wa = _arrays([p[0] for p in pairs])
    eb, _ = _arrays([p[1] for p in pairs])
    deltas, not_better = [], 0
    for idx in _resampled_indices(len(pairs), resamples, seed):
        w = np.maximum(wa[idx].sum(axis=1), 1)
        d = PERCENT * (ea[idx].sum(axis=1) - eb[idx].sum(axis=1)) / w
        deltas.append(d)
        not_better += int((d >= 0).sum())
    total_w = int(wa.sum())
    wer_a, wer_b = _rate(int(ea.sum()), total_w), _rate(int(eb.sum()), total_w)
    return PairedComparison(
        a=names[0], b=names[1], normaliser=normaliser, wer_a=round(wer_a, 4), wer_b=round(wer_b, 4),
        delta=round(wer_a - wer_b, 4), delta_ci=_percentiles(np.concatenate(deltas), level, resamples),
        p_value=not_better / resamples, utterances=len(pairs),
    )


def _group(scores: Iterable[UtteranceScore], key: Callable[[UtteranceScore], str],
           order: Callable[[str], Any] = str) -> tuple[GroupWer, ...]:
    groups: dict[str, list[UtteranceScore]] = defaultdict(list)
    for s in scores:
        groups[key(s)].append(s)
    out = []
    for name in sorted(groups, key=order):
        g = groups[name]
        e, w = sum(s.errors for s in g), sum(s.ref_words for s in g)
        out.append(GroupWer(name, len(g), w, e, round(_rate(e, w), 4), round(sum(s.duration for s in g), 3)))
    return tuple(out)


def per_speaker(scores: Sequence[UtteranceScore]) -> tuple[GroupWer, ...]:
    """WER per speaker (utterances without one are grouped as ``unknown``)."""
    return _group(scores, lambda s: s.speaker or UNKNOWN_SPEAKER)


def duration_bucket(duration: float, edges: Sequence[float] = DURATION_EDGES_S) -> str:
    """The bucket name of a duration: ``"2-4s"``, or ``">30s"`` past the last edge."""
    low = 0.0
    for high in edges:
        if duration < high:
            return f"{low:g}-{high:g}s"
        low = high
    return f">{low:g}s"


def per_duration(scores: Sequence[UtteranceScore],
                 edges: Sequence[float] = DURATION_EDGES_S) -> tuple[GroupWer, ...]:
    """WER per duration bucket, shortest first."""
    def order(name: str) -> float:
        return float(name.lstrip(">").split("-")[0].rstrip("s"))

    return _group(scores, lambda s: duration_bucket(s.duration, edges), order)


def corpus_score(scores: Sequence[UtteranceScore], normaliser: str) -> WerResult:
    """The corpus :class:`WerResult` of scored utterances (WER and CER via metrics)."""
    return word_error_rate([s.ref for s in scores], [s.hyp for s in scores], normaliser)


# --- decoding ----------------------------------------------------------------------------


# Evaluation decodes greedily with no temperature fallback, as ASR benchmarks do: every
# model gets the same deterministic search, so differences are the models'. (Fallback
# samples best_of=5 candidates per clip, and openai-whisper's batched DecodingTask does
# not repeat the audio features for them: batch > 1 with fallback fails inside whisper.)
EVAL_TEMPERATURES = (0.0,)


def _decode_options(teacher, options):
    """Decoding options for a model: the caller's, else those its checkpoint names.

    A student trained on short encoder windows stores its window policy in the
    checkpoint; decoding it with the teacher's defaults would measure another model.
    """
    if options is not None:
        return options
    from .teacher.options import LabelOptions

    stored = _stored_options(teacher)
    # Off-the-shelf models at their fastest short context (10 s): speed comparisons against
    # a student are then conservative. Formatting may differ from the 20 s labeling default.
    return stored if stored is not None else LabelOptions(temperatures=EVAL_TEMPERATURES, min_window_s=10.0)


def _stored_options(teacher):
    """The ``StudentOptions`` an exported student's ``.pt`` names (``asr_distill.window_policy``)."""
    source = Path(str(teacher.source))
    if source.suffix != ".pt" or not source.is_file():
        return None
    import torch

    ckpt = torch.load(source, map_location="cpu", weights_only=False)
    desc = ckpt.get("asr_distill") if isinstance(ckpt, dict) else None
    policy = desc.get("window_policy") if isinstance(desc, dict) else None
    if not isinstance(policy, dict):
        return None
    from .student.short_context import StudentOptions, WindowPolicy

    try:
        return StudentOptions.from_policy(WindowPolicy(**policy), temperatures=EVAL_TEMPERATURES)
    except (TypeError, ValueError) as e:
        log.warning("%s: ignoring its stored window policy %r (%s)", source, policy, e)
        return None


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
    batch_size: int = 8,
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
            ``Teacher``.
        manifest: NeMo manifest whose ``text`` is the reference.
        name: the model's display name (default: its resolved name).
        batch_size: clips per forward pass.
        options: ``LabelOptions``; default: greedy without temperature fallback
            (:data:`EVAL_TEMPERATURES`), in the encoder windows a student checkpoint names,
            else the labeler's short windows (with a retry at 30 s).
        backend: ``whisper`` or ``faster-whisper``.
        device: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (the GPU when there is one).
        precision: the encoder's dtype (``auto``, ``fp32``, ``bf16``, ``fp16``), as in labeling.
    """
    from .label import label_batches
    from .teacher import Teacher, load_teacher

    teacher = model if isinstance(model, Teacher) else load_teacher(model, device=resolve_device(device))
    opts = _decode_options(teacher, options)
    ids, refs, hyps, durs, spk = [], [], [], [], []
    skipped = 0
    missing_refs = 0
    start = time.perf_counter()
    for labels, skips in label_batches(manifest, teacher=teacher, backend=backend, options=opts,
                                       batch_size=batch_size, progress=progress, precision=precision):
        skipped += len(skips)
        for lab in labels:
            if lab.ref_text is None:
                missing_refs += 1
                continue
            ids.append(lab.id)
            refs.append(lab.ref_text)
            hyps.append(lab.text)
            durs.append(lab.duration)
            spk.append(lab.speaker)
    wall = time.perf_counter() - start
    if missing_refs:
        log.warning("%s: %d utterances have no reference text and are not scored", manifest, missing_refs)
    if skipped:
        log.warning("%s: %d utterances could not be decoded (bad audio) and are not scored",
                    manifest, skipped)
    return Transcription(
        model=name or teacher.name, source=str(teacher.source), params=teacher.n_params,
        ids=tuple(ids), refs=tuple(refs), hyps=tuple(hyps), durations=tuple(durs), speakers=tuple(spk),
        audio_s=round(sum(durs), 3), wall_s=round(wall, 3), skipped=skipped,
    )


# --- one model, several models ----------------------------------------------------------


def measure(
    t: Transcription,
    manifest: str | Path,
    normaliser: str = DEFAULT_NORMALISER,
    *,
    other_normalisers: Sequence[str] = (),
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> tuple[ModelResult, list[UtteranceScore]]:
    """Score a transcription: corpus WER/CER, bootstrap CI, breakdowns, alignments."""
    if not t.ids:
        raise ValueError(f"{t.model}: nothing to score in {manifest} (no utterance with a reference)")
    scores = score_utterances(t.refs, t.hyps, normaliser, ids=t.ids, durations=t.durations,
                              speakers=t.speakers)
    other = {n: round(word_error_rate(t.refs, t.hyps, n).wer, 4)
             for n in other_normalisers if n != normaliser}
    result = ModelResult(
        model=t.model, source=t.source, manifest=str(manifest), normaliser=normaliser,
        score=corpus_score(scores, normaliser), ci=bootstrap_wer(scores, resamples, level, seed),
        rtfx=round(t.rtfx, 3), params=t.params, audio_s=t.audio_s, wall_s=t.wall_s, skipped=t.skipped,
        per_speaker=per_speaker(scores), per_duration=per_duration(scores), other_wer=other,
    )
    return result, scores


def slug(name: str) -> str:
    """A model name as a folder name ("runs/x/student.pt" -> "runs_x_student.pt")."""
    return _SLUG.sub("_", name).strip("_") or "model"


def save_transcription(t: Transcription, folder: Path) -> None:
    """Hypotheses then timing, each atomically: timing's presence means the set is whole."""
    atomic_write_jsonl(folder / HYPS_NAME, (
        {"id": i, "ref": r, "hyp": h, "duration": d, "speaker": s}
        for i, r, h, d, s in zip(t.ids, t.refs, t.hyps, t.durations, t.speakers, strict=True)
    ))
    timing = {"model": t.model, "source": t.source, "params": t.params, "audio_s": t.audio_s,
              "wall_s": t.wall_s, "skipped": t.skipped}
    atomic_write_text(folder / TIMING_NAME, json.dumps(timing, indent=2) + "\n")


def load_transcription(folder: Path) -> Transcription | None:
    """A transcription saved by :func:`save_transcription`, or None if it is incomplete."""
    timing_path, hyps_path = folder / TIMING_NAME, folder / HYPS_NAME
    if not (timing_path.is_file() and hyps_path.is_file()):
        return None
    timing = json.loads(timing_path.read_text())
    rows = list(read_jsonl(hyps_path))
    return Transcription(
        model=timing["model"], source=timing["source"], params=timing["params"],
        ids=tuple(r["id"] for r in rows), refs=tuple(r["ref"] for r in rows),
        hyps=tuple(r["hyp"] for r in rows), durations=tuple(r["duration"] for r in rows),
        speakers=tuple(r.get("speaker") for r in rows), audio_s=timing["audio_s"],
        wall_s=timing["wall_s"], skipped=timing.get("skipped", 0),
    )


def write_alignment(scores: Sequence[UtteranceScore], folder: Path) -> None:
    """``alignment.jsonl`` (one utterance per line, chunks as op/ref/hyp) and a readable
    ``alignment.txt`` in jiwer's REF/HYP layout, utterances with most errors first."""
    atomic_write_jsonl(folder / ALIGNMENT_NAME, (asdict(s) for s in scores))
    blocks = []
    for s in sorted(scores, key=lambda s: (-s.errors, s.id)):
        blocks.append(_alignment_block(s))
    atomic_write_text(folder / ALIGNMENT_TEXT_NAME, "\n".join(blocks))


_OP_MARK = {"substitute": "S", "delete": "D", "insert": "I", "equal": " "}


def _alignment_block(s: UtteranceScore) -> str:
    ref_row, hyp_row, ops_row = [], [], []
    for op, r, h in s.alignment:
        rw, hw = r.split(), h.split()
        for k in range(max(len(rw), len(hw))):
            a = rw[k] if k < len(rw) else "*"
            b = hw[k] if k < len(hw) else "*"
            width = max(len(a), len(b))
            ref_row.append(a.ljust(width))
            hyp_row.append(b.ljust(width))
            ops_row.append(_OP_MARK[op].ljust(width))
    head = f"=== {s.id}  S={s.substitutions} D={s.deletions} I={s.insertions} N={s.ref_words} ==="
    return "\n".join([head, "REF: " + " ".join(ref_row), "HYP: " + " ".join(hyp_row),
                      "     " + " ".join(ops_row).rstrip(), ""])


def result_dict(r: ModelResult) -> dict[str, Any]:
    """A :class:`ModelResult` as JSON-ready dict, with ``wer``/``cer`` at the top level."""
    d = asdict(r)
    d["wer"] = r.score.wer
    d["cer"] = r.score.cer
    return d


def model_result_from_dict(d: dict[str, Any]) -> ModelResult:
    """Inverse of :func:`result_dict` (for reports reading ``summary.json``)."""
    d = dict(d)
    d.pop("wer", None)
    d.pop("cer", None)
    d["score"] = WerResult(**d["score"])
    d["ci"] = Interval(**d["ci"])
    d["per_speaker"] = tuple(GroupWer(**g) for g in d["per_speaker"])
    d["per_duration"] = tuple(GroupWer(**g) for g in d["per_duration"])
    return ModelResult(**d)


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"student=runs/x/student.pt"`` -> ``("student", "runs/x/student.pt")``; a bare
    spec names itself. Lets a table say "teacher" instead of a cache path."""
    name, sep, model = spec.partition("=")
    if sep and name and model:
        return name, model
    return spec, spec


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
        models: ``(name, model)`` pairs, or specs ``"name=model"`` / ``"model"``; a
            model is anything :func:`transcribe` takes.
        manifest: test manifest with reference ``text``.
        out_dir: where each model's artefacts go (``out_dir/<name>/``), plus
            ``summary.json`` and ``table.md``; None keeps everything in memory.
        normaliser: the normaliser every headline figure uses.
        other_normalisers: further normalisers whose WER is reported beside it.
        options: per-model ``LabelOptions`` by name (default: see :func:`transcribe`).
        reuse: take a model's saved hypotheses from ``out_dir`` instead of decoding
            again (the speed figures are those of the run that decoded them).

    Returns:
        An :class:`Evaluation`; ``comparisons`` pair every later model with the first
        (the reference system, e.g. the teacher) and the last with each other one.
    """
    get_normaliser(normaliser)  # fail on a typo before decoding anything
    for n in other_normalisers:
        get_normaliser(n)
    pairs = [parse_model_spec(m) if isinstance(m, str) else tuple(m) for m in models]
    names = [p[0] for p in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}; name them with NAME=MODEL")
    out = Path(out_dir) if out_dir is not None else None
    results: list[ModelResult] = []
    all_scores: dict[str, list[UtteranceScore]] = {}
    for name, model in pairs:
        folder = out / slug(name) if out is not None else None
        t = load_transcription(folder) if (folder is not None and reuse) else None
        if t is None:
            log.info("evaluating %s (%s) on %s", name, model, manifest)
            t = transcribe(model, manifest, name=name, batch_size=batch_size, backend=backend,
                           device=device, options=(options or {}).get(name), progress=progress)
            if folder is not None:
                save_transcription(t, folder)
        else:
            log.info("evaluating %s: reusing the hypotheses in %s", name, folder)
        result, scores = measure(t, manifest, normaliser, other_normalisers=other_normalisers,
                                 resamples=resamples, level=level, seed=seed)
        if folder is not None:
            write_alignment(scores, folder)
            atomic_write_text(folder / RESULT_NAME, json.dumps(result_dict(result), indent=2) + "\n")
        log.info("%s: WER %.2f%% [%.2f, %.2f] (%s), RTFx %.1f, %d params", name, result.wer,
                 result.ci.low, result.ci.high, normaliser, result.rtfx, result.params)
        results.append(result)
        all_scores[name] = scores
    comparisons = _comparisons(names, all_scores, normaliser, resamples, level, seed)
    ev = Evaluation(str(manifest), normaliser, tuple(results), tuple(comparisons),
                    str(out) if out is not None else None)
    if out is not None:
        write_summary(ev, out)
    return ev


def _comparisons(names, all_scores, normaliser, resamples, level, seed) -> list[PairedComparison]:
    wanted: list[tuple[str, str]] = [(n, names[0]) for n in names[1:]]
    last = names[-1] if len(names) > 2 else None
    if last is not None:
        wanted += [(last, n) for n in names[1:-1]]
    return [paired_bootstrap(all_scores[a], all_scores[b], names=(a, b), normaliser=normaliser,
                             resamples=resamples, level=level, seed=seed) for a, b in wanted]


def write_summary(ev: Evaluation, out: Path) -> None:
    """``summary.json`` (every figure) and ``table.md`` (the comparison a reader wants)."""
    summary = {
        "manifest": ev.manifest,
        "normaliser": ev.normaliser,
        "models": [result_dict(r) for r in ev.results],
        "comparisons": [dict(asdict(c), a_better=c.a_better) for c in ev.comparisons],
    }
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    table = format_table(ev.results) + "\n\n" + format_comparisons(ev.comparisons)
    atomic_write_text(out / TABLE_NAME, table)


def load_evaluation(out: str | Path) -> Evaluation:
    """Read back an evaluation written by :func:`evaluate` (its ``summary.json``)."""
    d = json.loads((Path(out) / SUMMARY_NAME).read_text())
    comps = []
    for c in d["comparisons"]:
        c = dict(c)
        c.pop("a_better", None)
        c["delta_ci"] = Interval(**c["delta_ci"])
        comps.append(PairedComparison(**c))
    return Evaluation(d["manifest"], d["normaliser"], tuple(model_result_from_dict(m) for m in d["models"]),
                      tuple(comps), str(out))


def format_params(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def format_table(results: Sequence[ModelResult]) -> str:
    """A markdown table: one row per model with WER (CI), CER, S/D/I, RTFx, parameters."""
    if not results:
        return ""
    norm = results[0].normaliser
    others = sorted({k for r in results for k in r.other_wer})
    head = (["model", f"WER % ({norm})", f"{int(results[0].ci.level * 100)}% CI", "CER %", "S/D/I"]
            + [f"WER % ({o})" for o in others] + ["RTFx", "params", "utts"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        s = r.score
        cells = [r.model, f"{s.wer:.2f}", f"{r.ci.low:.2f}-{r.ci.high:.2f}", f"{s.cer:.2f}",
                 f"{s.substitutions}/{s.deletions}/{s.insertions}"]
        cells += [f"{r.other_wer[o]:.2f}" if o in r.other_wer else "-" for o in others]
        cells += [f"{r.rtfx:.1f}", format_params(r.params), str(s.utterances)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_comparisons(comparisons: Sequence[PairedComparison]) -> str:
    """A markdown table of paired bootstrap results."""
    if not comparisons:
        return ""
    rows = ["| A | B | WER A | WER B | A - B (95% CI) | p (A not better) | verdict |",
            "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        if c.a_better:
            verdict = f"{c.a} better"
        elif c.delta > 0 and 1.0 - c.p_value < SIGNIFICANCE:
            verdict = f"{c.b} better"
        else:
            verdict = "no significant difference"
        rows.append(f"| {c.a} | {c.b} | {c.wer_a:.2f} | {c.wer_b:.2f} | {c.delta:+.2f} "
                    f"({c.delta_ci.low:+.2f}, {c.delta_ci.high:+.2f}) | {c.p_value:.3f} | {verdict} |")
    return "\n".join(rows)


def format_breakdown(groups: Sequence[GroupWer], title: str) -> str:
    """A markdown table of per-group WERs (speakers or duration buckets)."""
    rows = [f"| {title} | utts | words | WER % | audio min |", "|---|---|---|---|---|"]
    for g in groups:
        rows.append(f"| {g.name} | {g.utterances} | {g.ref_words} | {g.wer:.2f} | {g.audio_s / 60:.1f} |")
    return "\n".join(rows)


def score_label_file(path: str | Path, normaliser: str = DEFAULT_NORMALISER) -> WerResult | None:
    """Label WER of a pseudo-label file against its ``ref_text`` (None when it has none).

    For measuring the labels themselves (all vs kept), never for choosing them.
    """
    pairs = [(d["ref_text"], d["text"]) for d in read_jsonl(path) if d.get("ref_text") is not None]
    if not pairs:
        return None
    return word_error_rate([p[0] for p in pairs], [p[1] for p in pairs], normaliser)


__all__ = [
    "DURATION_EDGES_S",
    "Evaluation",
    "GroupWer",
    "Interval",
    "ModelResult",
    "PairedComparison",
    "Transcription",
    "UtteranceScore",
    "bootstrap_wer",
    "duration_bucket",
    "evaluate",
    "format_breakdown",
    "format_comparisons",
    "format_table",
    "load_evaluation",
    "measure",
    "paired_bootstrap",
    "parse_model_spec",
    "per_duration",
    "per_speaker",
    "score_label_file",
    "score_utterances",
    "transcribe",
]
