"""The labeling stage: a manifest in, teacher labels (and recorded skips) out.

``label()`` is the library entry point, a generator of ``TeacherLabel`` and ``Skip``
records. ``label_to_file()`` wraps it with a resumable writer: a rerun skips ids
already written, and a kill loses at most the batch in flight. ``--shard I/N`` gives
each array-job task a deterministic slice; ``merge_shards`` joins their files.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .jsonl import ResumableJsonlWriter, atomic_write_jsonl, iter_jsonl
from .manifest import read_manifest
from .records import Provenance, Skip, TeacherLabel, Utterance
from .teacher import Teacher, load_teacher
from .teacher.backends import Backend, make_backend
from .teacher.decode import decode_batch
from .teacher.options import LabelOptions

log = logging.getLogger(__name__)

BUCKET_BATCHES = 8  # clips are sorted by length within this many batches, so windows match
SHARD_NAME = "{stem}.shard{index:05d}-of-{count:05d}{suffix}"


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
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def _prefetch(items: Iterable, fn: Callable, workers: int, depth: int) -> Iterator:
    """``map(fn, items)`` in order, with up to ``depth`` calls running ahead in threads.

    Audio decoding (soundfile, soxr) releases the GIL, so it overlaps model compute.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="audio") as ex:
        pending: deque = deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _load(item: Utterance | Skip, done: frozenset[str] | set[str]) -> list:
    from .audio import iter_segments

    if isinstance(item, Skip):
        return [] if item.id in done else [item]
    if item.id in done:
        return []
    return [s for s in iter_segments(item) if (s.id if isinstance(s, Skip) else s[0].id) not in done]


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


def provenance_for(teacher: Teacher, backend: Backend, options: LabelOptions) -> Provenance:
    return Provenance(teacher.name, teacher.weights_sha256, backend.name, options.as_dict(), __version__)


def label_batches(
    manifest: str | Path,
    *,
    teacher: str | Teacher = "base",
    backend: str = "whisper",
    options: LabelOptions | None = None,
    batch_size: int = 8,
    shard: tuple[int, int] | None = None,
    done_ids: set[str] | frozenset[str] = frozenset(),
    loader_threads: int = 2,
    progress: bool = False,
) -> Iterator[tuple[list[TeacherLabel], list[Skip]]]:
    """Like ``label`` but yields one ``(labels, skips)`` pair per decoded batch (for writers)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    options = options or LabelOptions()
    teacher = teacher if isinstance(teacher, Teacher) else load_teacher(teacher)
    engine = make_backend(teacher, backend)
    prov = provenance_for(teacher, engine, options)
    records = read_manifest(manifest, shard=shard)
    segments = _prefetch(records, lambda r: _load(r, done_ids), loader_threads, depth=batch_size * 4)
    bar = _progress_bar(progress)
    audio_s, n_skipped, start = 0.0, 0, time.perf_counter()
    for batch, skips in _batches(segments, batch_size):
        labels = decode_batch(engine, batch, options, prov) if batch else []
        audio_s += sum(u.duration for u, _ in batch)
        n_skipped += len(skips)
        if bar is not None:
            bar.update(len(labels) + len(skips))
            wall = time.perf_counter() - start
            bar.set_postfix(audio_h=f"{audio_s / 3600:.2f}", rtfx=f"{audio_s / max(wall, 1e-9):.1f}",
                            skipped=n_skipped)
        yield labels, skips
    if bar is not None:
        bar.close()


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(unit="utt", desc="labeling", dynamic_ncols=True)


def label(manifest: str | Path, **kwargs) -> Iterator[TeacherLabel | Skip]:
    """Label every utterance of a NeMo manifest with a Whisper teacher.

    A generator of ``TeacherLabel`` (one per utterance or ≤30 s segment of a long
    recording) and ``Skip`` records (inputs that could not be used, with the reason).
    Keyword arguments are those of ``label_batches``: ``teacher`` (name or path or a
    loaded ``Teacher``), ``backend`` (``whisper`` or ``faster-whisper``), ``options``
    (``LabelOptions``), ``batch_size``, ``shard`` (``(i, n)``), ``done_ids``, ``progress``.
    """
    for labels, skips in label_batches(manifest, **kwargs):
        yield from labels
        yield from skips


def skips_path(out: str | Path) -> Path:
    """Where the skips of a label file go: ``labels.jsonl`` → ``labels.skips.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.skips{out.suffix or '.jsonl'}")


def shard_path(out: str | Path, shard: tuple[int, int]) -> Path:
    out = Path(out)
    return out.with_name(SHARD_NAME.format(stem=out.stem, index=shard[0], count=shard[1],
                                           suffix=out.suffix or ".jsonl"))


def label_to_file(manifest: str | Path, out: str | Path, **kwargs) -> LabelStats:
    """Label into ``out`` (and its ``.skips`` file), resuming whatever is already there.

    With ``shard=(i, n)`` the output goes to ``shard_path(out, shard)``.
    """
    shard = kwargs.get("shard")
    out = shard_path(out, shard) if shard else Path(out)
    start = time.perf_counter()
    labeled = skipped = 0
    audio_s = 0.0
    with ResumableJsonlWriter(out) as lw, ResumableJsonlWriter(skips_path(out)) as sw:
        done = lw.done_ids | sw.done_ids
        if done:
            log.info("resuming %s: %d ids already done", out, len(done))
        for labels, skips in label_batches(manifest, done_ids=done, **kwargs):
            lw.write(labels)
            sw.write(skips)
            labeled += len(labels)
            skipped += len(skips)
            audio_s += sum(lab.duration for lab in labels)
    return LabelStats(labeled, skipped, len(done), audio_s, time.perf_counter() - start)


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


def merge_shards(out: str | Path, parts: list[Path] | None = None, allow_missing: bool = False) -> int:
    """Join shard files into ``out`` (and their skips), dropping duplicate ids; atomic.

    Refuses when a shard is missing, unless ``allow_missing``: a merged file that looks
    complete but is not would be worse than an error.
    """
    out = Path(out)
    if parts is None:
        parts, count = find_shards(out)
        if not parts:
            raise FileNotFoundError(f"no shard files like {shard_path(out, (0, 1)).name} next to {out}")
        have = {int(_SHARD_RE.search(p.stem).group(1)) for p in parts}
        missing = sorted(set(range(count)) - have)
        if missing and not allow_missing:
            raise FileNotFoundError(f"shards {missing} of {count} are missing for {out}; "
                                    "run them, or pass --allow-missing")
    for target, sources in ((out, parts), (skips_path(out), [skips_path(p) for p in parts])):
        atomic_write_jsonl(target, _unique(sources))
    return sum(1 for _ in iter_jsonl(out))


def _unique(paths: list[Path]) -> Iterator[dict]:
    seen: set[str] = set()
    for p in paths:
        if not p.exists():
            continue
        for _, obj in iter_jsonl(p):
            if isinstance(obj, Exception):
                raise obj
            if obj["id"] not in seen:
                seen.add(obj["id"])
                yield obj
