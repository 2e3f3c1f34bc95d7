"""The labeling stage: a manifest in, teacher labels (and recorded skips) out.

``label()`` is the library entry point, a generator of ``TeacherLabel`` and ``Skip``
records. ``label_to_file()`` wraps it with a resumable writer: a rerun skips ids
already written, and a kill loses at most the batch in flight. ``--shard I/N`` gives
each array-job task a deterministic slice; ``merge_shards`` joins their files.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .audio import MAX_SEGMENT_S, check_segmenting
from .audio import SKIP_REASONS as AUDIO_SKIP_REASONS
from .features import NON_FINITE_FEATURES, FeatureError
from .interop.inputs import read_input
from .jsonl import (
    OutputLockedError,
    OutputNotWritableError,
    ResumableJsonlWriter,
    UnsafeOutputError,
    atomic_write_jsonl,
    iter_jsonl,
    lock_holder,
    lock_path_for,
    output_lock,
    read_jsonl,
)
from .outputs import check_output
from .records import Provenance, Skip, TeacherLabel, Utterance
from .teacher import Teacher, load_teacher
from .teacher.backends import Backend, make_backend
from .teacher.decode import decode_batch
from .teacher.options import (
    AUTO_BATCH,
    BACKENDS,
    DEFAULT_SEED,
    DEFAULT_TEACHER,
    LabelOptions,
    check_batch_size,
    check_precision,
)
from .vad import CUT_PAUSE_S, EDGE_PAD_S

log = logging.getLogger(__name__)

BUCKET_BATCHES = 8  # clips are sorted by length within this many batches, so windows match
PREFETCH_AUDIO_S = 900.0  # audio decoded ahead of the model is capped at this many seconds (~58 MB)
UNKNOWN_DURATION_S = 30.0  # what a record of unknown length counts for in that cap
LOADER_THREADS = 2  # audio decoding threads per labeling process
# OSErrors that mean "this output cannot be written here", not a bug: reported as such.
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)
SHARD_NAME = "{stem}.shard{index:05d}-of-{count:05d}{suffix}"
# Reasons a clip is skipped for its content: a rerun counts such a skip as done (not relabeled).
SKIP_REASONS = (*AUDIO_SKIP_REASONS, NON_FINITE_FEATURES)


@dataclass(frozen=True)
class LabelRun:
    """How a labeling job runs: the teacher, its backend and device, batching, seeds.

    One object for every labeling entry point (``label``, ``label_to_file``,
    ``label_job.label_job``), checked once here, so a bad setting is refused before a model
    loads or a file opens. Picklable while ``teacher`` is a name or path (worker processes
    get it whole).

    Attributes:
        teacher: a ``load_teacher`` name or path, or a loaded ``Teacher``.
        backend: ``whisper`` or ``faster-whisper`` (``teacher.options.BACKENDS``).
        options: how to decode.
        batch_size: clips per ``decode_batch`` call; clips of similar length share a batch.
            ``auto``: as many as fit in the GPU's free memory, 8 on a CPU (``teacher.batching``).
        shard: ``(i, n)``: only manifest lines with index ``i`` mod ``n``.
        loader_threads: threads decoding audio ahead of the model (0: decode inline).
        seed: fixes temperature-fallback sampling per batch (see ``batch_seed``).
        progress: show a progress bar with the rate.
        device: ``cpu``, ``cuda``, ``cuda:1``; None: CUDA when present. Places a teacher
            given by name, and the faster-whisper engine.
        precision: the encoder's dtype, ``teacher.options.PRECISIONS`` (see
            ``teacher.backends.encoder_dtype``).
        segmenter: how long recordings are cut, ``audio.SEGMENTERS`` (``energy``: at
            the quietest pauses, no extra dependency; ``silero``: Silero VAD speech regions).
        segment_s: the longest segment a recording is cut into (``audio.SEGMENT_S_RANGE``);
            recordings up to this long are labeled whole.
        cut_pause_s: ``silero`` only: a pause at least this long always ends a segment
            (None: ``vad.CUT_PAUSE_S``, 0.5 s; ``math.inf``: speech packed up to ``segment_s``).

    Raises:
        ValueError: ``batch_size`` below 1 (and not ``auto``), or an unknown ``backend``, ``precision`` or
            ``segmenter``, or a ``segment_s`` out of range.
    """

    teacher: str | os.PathLike | Teacher = DEFAULT_TEACHER
    backend: str = "whisper"
    options: LabelOptions = field(default_factory=LabelOptions)
    batch_size: int | str = AUTO_BATCH
    shard: tuple[int, int] | None = None
    loader_threads: int = LOADER_THREADS
    seed: int = DEFAULT_SEED
    progress: bool = False
    device: str | None = None
    precision: str = "auto"
    segmenter: str = "energy"
    segment_s: float = MAX_SEGMENT_S
    cut_pause_s: float | None = None

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        if self.backend not in (*BACKENDS, "ct2"):
            raise ValueError(f"unknown backend {self.backend!r}: choose 'whisper' or 'faster-whisper'")
        check_precision(self.precision)
        check_segmenting(self.segmenter, self.segment_s, self.cut_pause_s)

    def segmentation(self) -> dict[str, Any]:
        """How recordings were cut, for provenance.

        The pause cut resolved (None: no pause cuts) and, with one, the pause a piece keeps
        beside its speech.
        """
        cut = None
        if self.segmenter == "silero":
            cut = CUT_PAUSE_S if self.cut_pause_s is None else self.cut_pause_s
        cut = cut if cut is not None and math.isfinite(cut) else None
        pad = {} if cut is None else {"pad_s": EDGE_PAD_S}
        return {"segmenter": self.segmenter, "segment_s": self.segment_s, "cut_pause_s": cut} | pad


@dataclass(frozen=True)
class LabelStats:
    """What a labeling run did; ``rtfx`` is audio seconds per wall second."""

    labeled: int
    skipped: int
    already_done: int
    audio_s: float
    wall_s: float

    @property
    def rtfx(self) -> float:
        """Audio seconds per wall second."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def _prefetch(
    items: Iterable,
    fn: Callable,
    workers: int,
    depth: int,
    weight: Callable[[object], float] = lambda _: 0.0,
    budget: float = math.inf,
) -> Iterator:
    """``map(fn, items)`` in order, with calls running ahead in ``workers`` threads.

    At most ``depth`` calls are in flight, and fewer when their summed ``weight`` (audio
    seconds) reaches ``budget``, so a manifest of hour-long files cannot fill memory with
    decoded audio; one call always runs, whatever its weight. Audio decoding (libsndfile,
    soxr) releases the GIL, so it overlaps model compute (``benchmarks/reliability.py``
    measures the overlap).
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="audio") as ex:
        pending: deque = deque()
        ahead = 0.0
        for item in items:
            w = weight(item)
            while pending and (len(pending) >= depth or ahead + w > budget):
                future, done_w = pending.popleft()
                ahead -= done_w
                yield future.result()
            pending.append((ex.submit(fn, item), w))
            ahead += w
        while pending:
            yield pending.popleft()[0].result()


def _audio_weight(item: Utterance | Skip) -> float:
    """Seconds of audio ``_load`` will decode for a manifest record (0 for a skip)."""
    if isinstance(item, Skip):
        return 0.0
    return item.duration if math.isfinite(item.duration) else UNKNOWN_DURATION_S


def _load(
    item: Utterance | Skip,
    done: frozenset[str] | set[str],
    done_skips: frozenset[tuple[str, str]] | set[tuple[str, str]] | None = None,
    segmenter: str = "energy",
    segment_s: float = MAX_SEGMENT_S,
    cut_pause_s: float | None = None,
) -> list:
    """Decode one manifest record into segments, leaving out what a previous run wrote.

    A manifest-level skip (broken line, duplicate id) may share its id with a line that is
    labeled, so with ``done_skips`` it counts as done only when the same ``(id, reason)``
    was recorded; judging it by id alone would drop the other line's label on resume.
    ``segmenter`` cuts recordings over ``segment_s`` (``audio.iter_segments``).
    """
    from .audio import iter_segments

    if isinstance(item, Skip):
        if done_skips is not None:
            return [] if (item.id, item.reason) in done_skips else [item]
        return [] if item.id in done else [item]
    if item.id in done:
        return []
    segments = iter_segments(item, segmenter, segment_s, cut_pause_s)
    return [s for s in segments if (s.id if isinstance(s, Skip) else s[0].id) not in done]


def _batches(segments: Iterator, batch_size: int) -> Iterator[tuple[list, list[Skip]]]:
    """Group (utterance, audio) pairs into batches of similar length; skips pass straight on."""
    buffer: list[tuple[Utterance, np.ndarray]] = []
    skips: list[Skip] = []
    for group in segments:
        for s in group:
            if isinstance(s, Skip):
                skips.append(s)
            else:
                buffer.append(s)
        if len(buffer) >= batch_size * BUCKET_BATCHES:
            yield from _drain(buffer, skips, batch_size, keep_partial=True)
            skips = []
    yield from _drain(buffer, skips, batch_size, keep_partial=False)


def _drain(buffer: list, skips: list[Skip], batch_size: int, keep_partial: bool):
    buffer.sort(key=lambda s: s[0].duration)
    while len(buffer) >= batch_size or (buffer and not keep_partial):
        batch, buffer[:] = buffer[:batch_size], buffer[batch_size:]
        yield batch, skips
        skips = []
    if skips:
        yield [], skips


def batch_seed(seed: int, batch: list[tuple[Utterance, np.ndarray]]) -> int:
    """The RNG seed for one batch: a function of the run's seed and the batch's ids only.

    Temperature fallback samples; seeding each batch from its own ids (not from a global
    stream) gives the same labels in two runs with the same seed, whichever process or
    shard decodes the batch and whatever ran before it.
    """
    key = "\n".join(u.id for u, _ in batch).encode("utf-8")
    return zlib.crc32(key, seed & 0xFFFFFFFF)


@contextmanager
def _seeded(seed: int, backend: Backend) -> Iterator[None]:
    """Run a batch under ``seed`` without disturbing the caller's torch RNG state."""
    import torch

    device = getattr(backend, "device", None)
    cuda = [device] if device is not None and getattr(device, "type", "") == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if backend.name.startswith("faster"):
            import ctranslate2

            ctranslate2.set_random_seed(seed)
        yield


def provenance_for(
    teacher: Teacher, backend: Backend, options: LabelOptions, segmentation: dict[str, Any] | None = None
) -> Provenance:
    """A label's provenance for ``teacher`` decoded by ``backend``.

    ``decoding`` holds the options, the precision the backend chose (``auto`` resolved) and,
    when given, how recordings were cut (``LabelRun.segmentation``).
    """
    decoding = {**options.as_dict(), "precision": backend.precision}
    if segmentation is not None:
        decoding["segmentation"] = segmentation
    return Provenance(
        teacher.name, teacher.weights_sha256, backend.name, decoding, __version__, teacher.derived
    )


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _engine(run: LabelRun) -> tuple[Teacher, Backend]:
    """The teacher (loaded on ``run.device`` when given by name) and its decoding backend."""
    teacher, device = run.teacher, run.device
    if isinstance(teacher, Teacher):
        device = device or str(next(teacher.model.parameters()).device)
    else:
        device = device or _default_device()
        teacher = load_teacher(teacher, device=device)
    return teacher, make_backend(teacher, run.backend, run.precision, device)


def label_batches(
    manifest: str | Path | Iterable[Utterance | Skip],
    run: LabelRun | None = None,
    *,
    done_ids: set[str] | frozenset[str] = frozenset(),
    done_skips: set[tuple[str, str]] | frozenset[tuple[str, str]] | None = None,
    engine: Backend | None = None,
) -> Iterator[tuple[list[TeacherLabel], list[Skip]]]:
    """Like ``label`` but yields one ``(labels, skips)`` pair per decoded batch (for writers).

    Args:
        manifest: NeMo JSON Lines manifest (see ``manifest.read_manifest``), a saved Hugging
            Face dataset or a lhotse CutSet (see ``interop.inputs.read_input``), or records
            already read from one (``ray_engine``'s actors get theirs so; ``run.shard`` unused).
        run: the teacher, backend, batching and seed (default ``LabelRun()``).
        done_ids: utterance/segment ids needing no work.
        done_skips: the ``(id, reason)`` pairs of skips already recorded (None:
            manifest-level skips are judged by id alone).
        engine: the backend of a loaded ``run.teacher`` (then ``run.backend``, ``run.device``
            and ``run.precision`` are not used): made once by a caller that loads before writing.
    """
    run = run or LabelRun()
    teacher = run.teacher
    if engine is None or not isinstance(teacher, Teacher):
        teacher, engine = _engine(run)
    prov = provenance_for(teacher, engine, run.options, run.segmentation())
    size = engine.auto_batch_size() if run.batch_size == AUTO_BATCH else int(run.batch_size)
    segments = _segments(manifest, run, size, done_ids, done_skips)
    bar = _Progress() if run.progress else None
    for batch, skips in _batches(segments, size):
        labels = []
        if batch:
            with _seeded(batch_seed(run.seed, batch), engine):
                labels, refused = decode_isolated(engine, batch, run.options, prov)
            skips = [*skips, *refused]
        if bar is not None:
            bar.update(labels, skips, sum(u.duration for u, _ in batch))
        yield labels, skips
    if bar is not None:
        bar.close()


def _segments(manifest, run: LabelRun, batch_size: int, done_ids, done_skips) -> Iterator:
    """The manifest's records decoded to audio ahead of the model, minus what is already done."""
    if run.segmenter == "silero":
        from .vad import load_vad

        load_vad()  # a missing extra fails here, before the first long recording is reached
    records = read_input(manifest, shard=run.shard) if isinstance(manifest, (str, os.PathLike)) else manifest
    return _prefetch(
        records,
        lambda r: _load(r, done_ids, done_skips, run.segmenter, run.segment_s, run.cut_pause_s),
        run.loader_threads,
        depth=batch_size * 4,
        weight=_audio_weight,
        budget=PREFETCH_AUDIO_S,
    )


def decode_isolated(
    engine: Backend, batch: list[tuple[Utterance, np.ndarray]], options: LabelOptions, provenance: Provenance
) -> tuple[list[TeacherLabel], list[Skip]]:
    """``decode_batch``, with clips whose features are unusable taken out as recorded skips.

    The backend checks each clip's log-mel features before its encoder runs; a clip the
    audio checks let through but whose features are NaN or absurd (``FeatureError``) becomes
    a ``non_finite_features`` skip, and the rest of the batch is decoded without it.
    """
    refused: list[Skip] = []
    while batch:
        try:
            return decode_batch(engine, batch, options, provenance), refused
        except FeatureError as e:
            why = {id(audio): message for audio, message in e.clips}
            bad = [(u, a) for u, a in batch if id(a) in why]
            if not bad:
                raise  # clips we cannot tell apart: a bug, not an input to skip
            advice = "check the file's sample format or gain"
            refused += [
                Skip.of(u, NON_FINITE_FEATURES, f"{_where(u)}: {why[id(a)]}; {advice}") for u, a in bad
            ]
            batch = [(u, a) for u, a in batch if id(a) not in why]
    return [], refused


def _where(u: Utterance) -> str:
    span = f" [{u.offset:.2f}s +{u.duration:.2f}s]" if u.offset or "@" in u.id else ""
    return f"{u.audio_filepath}{span}"


class _Progress:
    """A tqdm bar of utterances done, with hours of audio, RTFx and skips so far."""

    def __init__(self):
        from tqdm.auto import tqdm

        self._bar = tqdm(unit="utt", desc="labeling", dynamic_ncols=True)
        self._audio_s, self._skipped, self._start = 0.0, 0, time.perf_counter()

    def update(self, labels: list[TeacherLabel], skips: list[Skip], audio_s: float) -> None:
        self._audio_s += audio_s
        self._skipped += len(skips)
        self._bar.update(len(labels) + len(skips))
        wall = max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix(
            audio_h=f"{self._audio_s / 3600:.2f}", rtfx=f"{self._audio_s / wall:.1f}", skipped=self._skipped
        )

    def close(self) -> None:
        self._bar.close()


def label(
    manifest: str | Path, run: LabelRun | None = None, *, done_ids: set[str] | frozenset[str] = frozenset()
) -> Iterator[TeacherLabel | Skip]:
    """Label every utterance of a NeMo manifest with a Whisper teacher.

    A generator of ``TeacherLabel`` (one per utterance or ≤30 s segment of a long
    recording) and ``Skip`` records (inputs that could not be used, with the reason).
    The arguments are those of ``label_batches``.
    """
    for labels, skips in label_batches(manifest, run, done_ids=done_ids):
        yield from labels
        yield from skips


def skips_path(out: str | Path) -> Path:
    """Where the skips of a label file go: ``labels.jsonl`` → ``labels.skips.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skips{out.suffix or '.jsonl'}")


def shard_path(out: str | Path, shard: tuple[int, int]) -> Path:
    """Where shard ``(i, n)`` of ``out`` is written: ``labels.shard00001-of-00004.jsonl``."""
    out = Path(out)
    return out.with_name(
        SHARD_NAME.format(stem=out.stem, index=shard[0], count=shard[1], suffix=out.suffix or ".jsonl")
    )


def label_to_file(
    manifest: str | Path, out: str | Path, run: LabelRun | None = None, *, force: bool = False
) -> LabelStats:
    """Label into ``out`` (and its ``.skips`` file), resuming whatever is already there.

    With ``run.shard=(i, n)`` the output goes to ``shard_path(out, shard)``. Both files are
    checked (``check_output_files``) and the teacher is loaded before either is opened, so
    a refused output or a bad model leaves nothing behind. ``force`` replaces an existing
    file this toolkit did not write. ``run`` is as for ``label_batches``.

    Raises:
        UnsafeOutputError: an output is the manifest, a link, or a file we did not write.
    """
    run = run or LabelRun()
    out = shard_path(out, run.shard) if run.shard else Path(out)
    check_output_files(out, [manifest], force=force)
    _refuse_if_locked(out)  # at once, not after loading the model (the writers lock for real)
    start = time.perf_counter()
    teacher, engine = _engine(run)
    with open_label_files(out, [manifest], force=force) as files:
        batches = label_batches(
            manifest,
            replace(run, teacher=teacher),
            done_ids=files.done,
            done_skips=files.done_skips,
            engine=engine,
        )
        labeled, skipped, audio_s = _write_batches(batches, files.labels, files.skips)
    return LabelStats(labeled, skipped, files.already_done, audio_s, time.perf_counter() - start)


@dataclass(frozen=True)
class LabelFiles:
    """A label file and its skips file, open for resumable appends, and what they already hold.

    Attributes:
        labels: the writer of the label file (one ``TeacherLabel`` per line).
        skips: the writer of its ``.skips`` file.
        done: ids needing no work: labeled, or skipped for their content (``SKIP_REASONS``).
        done_skips: ``(id, reason)`` of every skip already recorded.
    """

    labels: ResumableJsonlWriter
    skips: ResumableJsonlWriter
    done: set[str]
    done_skips: set[tuple[str, str]]

    @property
    def already_done(self) -> int:
        """Ids a previous run labeled or skipped (what a rerun leaves alone)."""
        return len(self.done | {i for i, _ in self.done_skips})


@contextmanager
def open_label_files(out: str | Path, inputs: list, *, force: bool = False) -> Iterator[LabelFiles]:
    """Open ``out`` and its skips file for one writer: locked, a torn last line cut, done ids read.

    The one way a labeling run writes its output, whichever engine decodes (``label_to_file``,
    ``ray_engine.label_ray``). Call ``check_output_files`` first. ``force`` empties a file
    this toolkit did not write before it is opened; a full or read-only disk is reported as
    ``OutputNotWritableError``, even when the block raises it.
    """
    out = Path(out)
    if force:
        _clear_foreign(out, inputs)
    with (
        _clear_write_errors(out),
        ResumableJsonlWriter(out) as lw,
        ResumableJsonlWriter(skips_path(out)) as sw,
    ):
        done_skips = _skip_pairs(sw.path) if sw.done_ids else set()
        done = lw.done_ids | {i for i, reason in done_skips if reason in SKIP_REASONS}
        if done or done_skips:
            log.info("resuming %s: %d ids already done", out, len(lw.done_ids | sw.done_ids))
        yield LabelFiles(lw, sw, done, done_skips)


def _write_batches(
    batches: Iterable, lw: ResumableJsonlWriter, sw: ResumableJsonlWriter
) -> tuple[int, int, float]:
    """Write each batch's labels and skips as it comes; returns labels, skips and audio seconds written."""
    labeled = skipped = 0
    audio_s = 0.0
    for labels, skips in batches:
        lw.write(labels)
        sw.write(skips)
        labeled += len(labels)
        skipped += len(skips)
        audio_s += sum(lab.duration for lab in labels)
    return labeled, skipped, audio_s


def check_output_files(out: str | Path, inputs: list, *, force: bool = False) -> None:
    """Refuse a label file (or its ``.skips`` file) that would destroy data: see ``outputs.check_output``."""
    for path in (Path(out), skips_path(out)):
        check_output(path, inputs=inputs, kind="labels", force=force)


def _refuse_if_locked(out: Path) -> None:
    for path in (out, skips_path(out)):
        try:
            holder = lock_holder(lock_path_for(path, folder=False))
        except OSError:  # no folder to write in: the writer says so, with the reason
            holder = None
        if holder is not None:
            raise OutputLockedError(
                f"{path} is being written by another process ({holder}); wait for it, "
                "or give this job another --out"
            )


def _clear_foreign(out: Path, inputs: list) -> None:
    """``--force``: empty the label files that are not ours, under their lock, so the writer starts afresh."""
    for path in (out, skips_path(out)):
        try:
            check_output(path, inputs=inputs, kind="labels")
        except UnsafeOutputError:
            with output_lock(path, folder=False):
                log.warning("--force: replacing %s, which this toolkit did not write", path)
                with open(path, "wb"):
                    pass


@contextmanager
def _clear_write_errors(out: Path) -> Iterator[None]:
    """Keep a full or read-only disk a clear ``OutputNotWritableError``, even on close.

    When a batch's write fails half-way (ENOSPC), the writer raises a clear error, but
    closing its file flushes the rest of the buffer, fails again and replaces that error
    with a bare ``OSError``. The clear one is restored here; the torn line the failed write
    left is cut by the next run, which resumes.
    """
    try:
        yield
    except OutputNotWritableError:
        raise
    except OSError as e:
        if isinstance(e.__context__, OutputNotWritableError):
            raise e.__context__ from None
        if e.errno in _DISK_ERRNOS:
            raise OutputNotWritableError(
                f"cannot write {out}: {e.strerror}; free space or choose a writable --out, then rerun "
                "(finished lines are kept)"
            ) from e
        raise


def _skip_pairs(path: Path) -> set[tuple[str, str]]:
    """``(id, reason)`` of every skip already in a (repaired, locked) skips file."""
    return {(str(d["id"]), str(d.get("reason"))) for d in read_jsonl(path)}


_SHARD_RE = re.compile(r"\.shard(\d{5})-of-(\d{5})$")


def find_shards(out: str | Path) -> tuple[list[Path], int | None]:
    """The shard files written for ``out`` and the shard count they name."""
    out = Path(out)
    parts = sorted(out.parent.glob(f"{out.stem}.shard*-of-*{out.suffix or '.jsonl'}"))
    parts = [p for p in parts if _SHARD_RE.search(p.stem) and ".skips" not in p.name]
    counts = {int(_SHARD_RE.search(p.stem).group(2)) for p in parts}
    if len(counts) > 1:
        raise ValueError(f"shard files for {out} disagree on the shard count: {sorted(counts)}")
    return parts, counts.pop() if counts else None


def merge_shards(
    out: str | Path, parts: list[Path] | None = None, allow_missing: bool = False, force: bool = False
) -> int:
    """Join shard files into ``out`` (and their skips), dropping duplicate ids; atomic.

    Refuses when a shard is missing, unless ``allow_missing``: a merged file that looks
    complete but is not would be worse than an error. Refuses, too, while a shard is being
    written (its lock is held), when a shard is not a label file, and when ``out`` or its
    skips file exists and is not ours (unless ``force``). The caller holds ``out``'s lock
    (``merge_to_file``, or the parallel job's).

    Raises:
        FileNotFoundError: no shards, or some missing.
        OutputLockedError: a shard is being written (the message names it and its holder).
        UnsafeOutputError: ``out`` or a shard is not a file this toolkit wrote.
    """
    out = Path(out)
    if parts is None:
        parts = _complete_shards(out, allow_missing)
    _check_shards(out, parts, force)
    atomic_write_jsonl(out, _unique(parts, key=lambda d: d["id"]))
    atomic_write_jsonl(
        skips_path(out), _unique([skips_path(p) for p in parts], key=lambda d: (d["id"], d.get("reason")))
    )
    return sum(1 for _ in iter_jsonl(out))


def _complete_shards(out: Path, allow_missing: bool) -> list[Path]:
    parts, count = find_shards(out)
    if not parts:
        raise FileNotFoundError(f"no shard files like {shard_path(out, (0, 1)).name} next to {out}")
    have = {int(_SHARD_RE.search(p.stem).group(1)) for p in parts}
    missing = sorted(set(range(count)) - have)
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"shards {missing} of {count} are missing for {out}; run them, or pass --allow-missing"
        )
    return parts


def _check_shards(out: Path, parts: list[Path], force: bool) -> None:
    """Nothing half-written goes in, nothing that is not ours comes out (see ``merge_shards``)."""
    sources = [x for p in parts for x in (p, skips_path(p)) if x.exists()]
    for shard in sources:
        holder = lock_holder(lock_path_for(shard, folder=False))
        if holder is not None:
            raise OutputLockedError(
                f"shard {shard} is still being written ({holder}); merge when its "
                "label run has finished, or the merged file would lack its labels"
            )
        if _torn(shard):
            raise ValueError(
                f"shard {shard} ends in a line cut short (its label run was killed); rerun that "
                "shard's label command (it repairs the line), then merge"
            )
        try:
            check_output(shard, kind="labels")
        except UnsafeOutputError:
            raise UnsafeOutputError(
                f"shard {shard} is not a label file written by `asr-distill label`; "
                f"move it out of {shard.parent}, then merge"
            ) from None
    check_output_files(out, sources, force=force)


def _torn(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def merge_to_file(out: str | Path, allow_missing: bool = False, force: bool = False) -> int:
    """``merge_shards`` under ``out``'s lock (what ``asr-distill merge`` runs); returns the count.

    Raises:
        OutputLockedError: a label run writes ``out``, or a shard, now.
        Others: see ``merge_shards``.
    """
    out = Path(out)
    _check_shards(out, _complete_shards(out, allow_missing), force)  # before the lock file is made
    with output_lock(out, folder=False, what_to_do="wait for it to finish, then merge"):
        return merge_shards(out, allow_missing=allow_missing, force=force)


def _unique(paths: list[Path], key: Callable[[dict], object]) -> Iterator[dict]:
    """Records of ``paths`` in order, each ``key`` once (a skip is keyed by id and reason)."""
    seen: set = set()
    for p in paths:
        if not p.exists():
            continue
        for _, obj in iter_jsonl(p):
            if isinstance(obj, Exception):
                raise ValueError(
                    f"{obj}; rerun that shard's label command (it repairs a line cut by a kill), then merge"
                ) from None
            k = key(obj)
            if k not in seen:
                seen.add(k)
                yield obj
