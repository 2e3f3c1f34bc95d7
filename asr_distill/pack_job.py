"""Labeling with short utterances packed into shared windows (``asr-distill label --pack-s 30``).

The job plans windows (:func:`pack.plan_packs`), writes each window's joined audio and a
windows manifest into ``<out stem>.windows/`` beside ``out``, labels that manifest with word
timings (``label.label_to_file``, resumable like any label file), and splits each window's
label back into one label per utterance (:func:`pack.split_label`) in ``out``. Every step
resumes: a window already written, labeled or split is not redone.

A member whose audio cannot be used is skipped with its reason and the window joins the
others; a window the teacher skips becomes the same skip for each of its members; a window
of one utterance is its own manifest line, labeled (and, when long, segmented) as usual. A
member the window's label gives no words (Whisper skips a whole sentence now and then, 7% of
them on a speechocean762 pool sample) is decoded again on its own, so packing never turns
speech into an empty label.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .audio import MAX_SEGMENT_S, SAMPLE_RATE, AudioError, load_audio, write_wav
from .interop.inputs import read_input
from .jsonl import atomic_write_jsonl, read_jsonl
from .label import (
    LabelFiles,
    LabelRun,
    LabelStats,
    check_output_files,
    label_to_file,
    open_label_files,
    skips_path,
)
from .outputs import check_output
from .pack import GAP_S, PACK_S, Pack, join_audio, pack_of, plan_packs, split_label
from .records import Skip, TeacherLabel, Utterance

WINDOW_LABELS = "labels.jsonl"
WINDOW_MANIFEST = "windows.jsonl"
ALONE_MANIFEST = "alone.jsonl"  # members a window gave no words, decoded again each on its own
ALONE_LABELS = "alone_labels.jsonl"


def windows_dir(out: str | os.PathLike) -> Path:
    """Where a packed run keeps its windows: ``labels.jsonl`` → ``labels.windows/``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.windows")


def label_packed_to_file(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    run: LabelRun | None = None,
    *,
    max_s: float = PACK_S,
    gap_s: float = GAP_S,
    force: bool = False,
) -> LabelStats:
    """Label ``manifest`` into ``out`` with each speaker's consecutive utterances decoded together.

    ``run`` is as for ``label.label_to_file``; word timestamps are switched on (the split needs
    them). ``max_s`` is the longest window (at most Whisper's 30 s), ``gap_s`` the silence put
    between two utterances.

    Raises:
        ValueError: ``run.shard`` (a shard would cut speakers apart), or ``max_s`` over 30 s.
        UnsafeOutputError: ``out`` or a file in its windows folder was not written by this toolkit.
    """
    run = run or LabelRun()
    if run.shard:
        raise ValueError("packing keeps a speaker's utterances together; label without --shard")
    if not 0 < max_s <= MAX_SEGMENT_S:
        raise ValueError(f"a packed window holds at most {MAX_SEGMENT_S:g} s, got {max_s}")
    out, work = Path(out), windows_dir(out)
    check_output_files(out, [manifest], force=force)
    for name in (WINDOW_MANIFEST, ALONE_MANIFEST):
        check_output(work / name, inputs=[manifest], kind="manifest")
    for name in (WINDOW_LABELS, ALONE_LABELS):
        check_output_files(work / name, [manifest])
    start = time.perf_counter()
    run = replace(run, options=replace(run.options, word_timestamps=True))
    records = list(read_input(manifest))
    packs = plan_packs([r for r in records if isinstance(r, Utterance)], max_s, gap_s)
    with open_label_files(out, [manifest], force=force) as files:
        todo = [p for p in packs if not all(m.id in files.done for m in p.members)]
        fresh = [s for s in records if isinstance(s, Skip) and (s.id, s.reason) not in files.done_skips]
        windows, unusable = _write_windows(todo, work, gap_s)
        _write_new_skips(files, fresh + unusable)
        atomic_write_jsonl(work / WINDOW_MANIFEST, [w for w, _ in windows])
        label_to_file(work / WINDOW_MANIFEST, work / WINDOW_LABELS, run)
        planned = {p.id for p in packs if len(p.members) > 1}
        labeled, audio_s, empty = _split_into(files, {w["id"]: p for w, p in windows}, planned, work, gap_s)
        n, seconds = _decode_alone(files, empty, work, run)
    labeled, audio_s = labeled + n, audio_s + seconds
    skipped = len(fresh) + len(unusable)
    return LabelStats(labeled, skipped, files.already_done, audio_s, time.perf_counter() - start)


def _write_windows(packs: list[Pack], work: Path, gap_s: float) -> tuple[list[tuple[dict, Pack]], list[Skip]]:
    """Each pack as a windows-manifest line (its joined audio written once), and unusable members.

    A pack of one utterance is that utterance's own line (its file, offset and transcript), so
    a long recording is segmented by the labeler as usual and its label needs no split.
    """
    windows, unusable = [], []
    for pack in packs:
        if len(pack.members) == 1:
            windows.append((pack.members[0].to_dict(), pack))
            continue
        window, skips = _window(pack, work, gap_s)
        windows += [window] if window else []
        unusable += skips
    return windows, unusable


def _window(pack: Pack, work: Path, gap_s: float) -> tuple[tuple[dict, Pack] | None, list[Skip]]:
    """A pack's manifest line and its usable members' pack (audio written once), and the unusable.

    None instead of the line when no member is usable.
    """
    clips, kept, unusable = [], [], []
    for u in pack.members:
        try:
            clips.append(load_audio(u.audio_filepath, u.offset, u.duration))
            kept.append(u)
        except AudioError as e:
            unusable.append(Skip.of(u, e.reason, f"left out of window {pack.id}: {e}"))
    if not kept:
        return None, unusable
    joined = pack_of(pack.id, kept, gap_s, [len(c) / SAMPLE_RATE for c in clips])
    wav = work / f"{hashlib.sha1(pack.id.encode()).hexdigest()[:20]}.wav"
    if not wav.exists():
        write_wav(wav, join_audio(clips, gap_s))
    members = [[u.id, *span] for u, span in zip(kept, joined.spans, strict=True)]
    line = {"id": pack.id, "audio_filepath": str(wav.resolve()), "duration": joined.duration}
    return ({**line, "members": members}, joined), unusable


def _write_new_skips(files: LabelFiles, skips: list[Skip]) -> None:
    files.skips.write([s for s in skips if (s.id, s.reason) not in files.done_skips])


def _split_into(
    files: LabelFiles, windows: dict[str, Pack], planned: set[str], work: Path, gap_s: float
) -> tuple[int, float, list[tuple[Utterance, str]]]:
    """Each window's label split per member, or passed on whole, into ``out``.

    Returns the labels and seconds written, and the members their window gave no words, with
    the window's id: Whisper sometimes skips a whole sentence of a long window, and an empty
    label would be a deletion, so these are decoded again alone (``_decode_alone``).
    ``windows`` are this run's windows by id; a window of an earlier run whose members are all
    done (in ``planned`` but not in ``windows``) is passed over.
    """
    labeled, audio_s, empty = 0, 0.0, []
    for lab in _read(work / WINDOW_LABELS, TeacherLabel):
        pack = windows.get(lab.id)
        if lab.id in planned and pack is None:
            continue
        whole = pack is None or len(pack.members) == 1
        parts = [(lab, None)] if whole else list(zip(_split(lab, pack, gap_s), pack.members, strict=True))
        parts = [(p, m) for p, m in parts if p.id not in files.done]
        new = [p for p, m in parts if m is None or p.text.strip()]
        empty += [(m, lab.id) for p, m in parts if m is not None and not p.text.strip()]
        files.labels.write(new)
        labeled += len(new)
        audio_s += sum(p.duration for p in new)
    for skip in _read(skips_path(work / WINDOW_LABELS), Skip):
        pack = windows.get(skip.id)
        if skip.id in planned and pack is None:
            continue
        members = [skip] if pack is None or len(pack.members) == 1 else pack.members
        msg = f"window {skip.id}: {skip.message}"
        _write_new_skips(files, [skip if m is skip else Skip.of(m, skip.reason, msg) for m in members])
    return labeled, audio_s, empty


def _decode_alone(
    files: LabelFiles, empty: list[tuple[Utterance, str]], work: Path, run: LabelRun
) -> tuple[int, float]:
    """The members their windows gave no words, each labeled on its own into ``out`` (resumable).

    Their provenance names the window and says why they were decoded alone.
    """
    if not empty:
        return 0, 0.0
    window_of = {u.id: w for u, w in empty}
    atomic_write_jsonl(work / ALONE_MANIFEST, [u.to_dict() for u, _ in empty])
    label_to_file(work / ALONE_MANIFEST, work / ALONE_LABELS, run)
    labels = []
    for lab in _read(work / ALONE_LABELS, TeacherLabel):
        if lab.id in window_of and lab.id not in files.done:
            why = {"window": window_of[lab.id], "decoded_alone": "no words in its window"}
            labels.append(_noting_packed(lab, why))
    files.labels.write(labels)
    _write_new_skips(files, [s for s in _read(skips_path(work / ALONE_LABELS), Skip) if s.id in window_of])
    return len(labels), sum(lab.duration for lab in labels)


def _split(label: TeacherLabel, pack: Pack, gap_s: float) -> list[TeacherLabel]:
    """``pack.split_label``, the provenance saying which window each label was decoded in."""
    where = {"window": pack.id, "gap_s": gap_s, "window_s": pack.duration}
    return [_noting_packed(p, where) for p in split_label(label, pack)]


def _noting_packed(label: TeacherLabel, packed: dict) -> TeacherLabel:
    """``label`` with ``packed`` (its window, and why it was decoded as it was) in its provenance."""
    decoding = {**label.provenance.decoding, "packed": packed}
    return replace(label, provenance=replace(label.provenance, decoding=decoding))


def _read(path: Path, kind: type) -> Iterator:
    if path.exists():
        yield from (kind.from_dict(d) for d in read_jsonl(path))
