"""NeMo-style manifests: stream one into ``Utterance``/``Skip`` records, or build one from a folder.

A manifest is JSON Lines, one utterance per line: ``audio_filepath`` (relative to the
manifest's folder, or absolute), ``duration``, optional ``offset``, ``text``, ``speaker`` and
``id``. Reading is lazy, so a 100k-line manifest costs one line of memory plus the set of ids
seen. A bad line never stops the job: it becomes a ``Skip`` with reason ``bad_manifest_line``
(or ``duplicate_id``, or an audio reason when a missing duration cannot be read from the header).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .audio import AudioError, audio_info
from .jsonl import atomic_write_jsonl, iter_jsonl
from .records import Skip, Utterance

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")
DURATION_DECIMALS = 3  # build_manifest rounds header durations to the millisecond
BAD_LINE = "bad_manifest_line"
DUPLICATE_ID = "duplicate_id"
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class _BadLine(ValueError):
    """A manifest line that cannot become an Utterance; the text says which field and why."""


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse ``"I/N"`` (0-based shard ``I`` of ``N``) into ``(I, N)``.

    Raises:
        ValueError: naming the expected form, when ``spec`` is not ``I/N`` with ``0 <= I < N``.
    """
    m = _SHARD_RE.match(spec)
    if m is None:
        raise ValueError(f"shard must look like I/N (e.g. 0/4), got {spec!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"shard {spec!r} needs N >= 1 and 0 <= I < N (shards are 0-based: 0/{count or 1})")
    return index, count


def shard_filter(index: int, shard: tuple[int, int] | None) -> bool:
    """Whether the line at 0-based ``index`` belongs to ``shard`` (all lines when None).

    Line index modulo N: deterministic, needs no coordination, and balances long and short
    files that cluster in a manifest.
    """
    if shard is None:
        return True
    i, n = shard
    return index % n == i


def _number(obj: dict[str, Any], key: str, default: float | None) -> float | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadLine(f"'{key}' is {value!r}, not a number of seconds; write it as a JSON number")
    if not math.isfinite(value) or value < 0:
        raise _BadLine(f"'{key}' is {value!r}; it must be a finite number >= 0 seconds")
    return float(value)


def _optional_str(obj: dict[str, Any], key: str, *, coerce: bool) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if coerce and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # speaker and id are often numbers in the wild
    raise _BadLine(f"'{key}' is {value!r}; it must be a JSON string")


def _audio_path(obj: dict[str, Any], folder: str) -> str:
    value = obj.get("audio_filepath")
    if not isinstance(value, str) or not value.strip():
        raise _BadLine("'audio_filepath' is missing or not a non-empty string; every line needs one")
    return os.path.normpath(os.path.join(folder, os.path.expanduser(value)))


def _path_id(audio: str, folder: str) -> str:
    """The audio path relative to the manifest folder (absolute when outside it), no extension."""
    stem = os.path.splitext(audio)[0]
    try:
        return Path(stem).relative_to(folder).as_posix()
    except ValueError:
        return Path(stem).as_posix()


def _make_id(obj: dict[str, Any], audio: str, folder: str, offset: float) -> str:
    explicit = _optional_str(obj, "id", coerce=True)
    if explicit:
        return explicit
    base = _path_id(audio, folder)
    return f"{base}@{offset:.2f}" if offset > 0 else base


def _parse_line(obj: dict[str, Any], folder: str) -> Utterance:
    """One manifest object as an Utterance (``duration`` may be NaN: not given, read it later)."""
    audio = _audio_path(obj, folder)
    offset = _number(obj, "offset", 0.0)
    duration = _number(obj, "duration", math.nan)
    return Utterance(
        id=_make_id(obj, audio, folder, offset),
        audio_filepath=audio,
        duration=duration,
        offset=offset,
        text=_optional_str(obj, "text", coerce=False),
        speaker=_optional_str(obj, "speaker", coerce=True),
    )


def _or_none(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except _BadLine:
        return None


def _bad_line_skip(obj: Any, err: Exception, path: Path, line_no: int, folder: str) -> Skip:
    """A Skip for an unusable line, with the best id the line allows (its id, its path, its number)."""
    record_id, audio, offset = None, None, 0.0
    if isinstance(obj, dict):
        record_id = _or_none(lambda: _optional_str(obj, "id", coerce=True))
        audio = _or_none(lambda: _audio_path(obj, folder))
        offset = _or_none(lambda: _number(obj, "offset", 0.0)) or 0.0
    if not record_id and audio:
        record_id = _make_id({}, audio, folder, offset)
    reason = str(err) if isinstance(err, _BadLine) else str(err).removeprefix(f"{path}:{line_no}: ")
    message = f"{path} line {line_no}: {reason}; fix or delete the line (other lines are used)"
    return Skip(
        id=record_id or f"{path.name}:line{line_no}",
        audio_filepath=audio or "",
        reason=BAD_LINE,
        message=message,
        offset=offset,
    )


def _fill_duration(utt: Utterance) -> Utterance | Skip:
    """Take a missing duration from the audio header (the rest of the file after ``offset``)."""
    if not math.isnan(utt.duration):
        return utt
    try:
        total, _, _ = audio_info(utt.audio_filepath)
    except AudioError as e:
        return Skip(utt.id, utt.audio_filepath, e.reason, e.message, utt.offset, None)
    if total <= utt.offset:
        message = (
            f"{utt.audio_filepath}: offset {utt.offset:.3f}s is past the end ({total:.3f}s); fix the line"
        )
        return Skip(utt.id, utt.audio_filepath, "bad_range", message, utt.offset, None)
    return Utterance(utt.id, utt.audio_filepath, total - utt.offset, utt.offset, utt.text, utt.speaker)


def read_manifest(
    path: str | os.PathLike, shard: tuple[int, int] | None = None
) -> Iterator[Utterance | Skip]:
    """Stream a NeMo-style JSON Lines manifest as Utterances, or Skips for lines that cannot be used.

    Relative ``audio_filepath`` values resolve against the manifest's folder and are stored
    absolute. The id is the line's ``id``, else the audio path relative to that folder without
    extension, plus ``@{offset:.2f}`` when offset > 0. A missing ``duration`` is read from the
    audio header. A repeated id is skipped (``duplicate_id``); the first occurrence wins.

    Args:
        path: The manifest.
        shard: ``(I, N)`` from ``parse_shard``: keep lines whose 0-based line index is I mod N.
            Every line is still parsed for ids, so duplicates are judged the same in every shard.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist or is not a file")
    folder = os.path.abspath(path.parent)
    first_line: dict[str, int] = {}
    for line_no, obj in iter_jsonl(path):
        mine = shard_filter(line_no - 1, shard)
        try:
            if isinstance(obj, Exception):
                raise obj
            utt = _parse_line(obj, folder)
        except ValueError as e:  # _BadLine, or iter_jsonl's broken-line error
            if mine:
                yield _bad_line_skip(obj, e, path, line_no, folder)
            continue
        if utt.id in first_line:
            if mine:
                message = (
                    f"{path} line {line_no}: id {utt.id!r} already used on line {first_line[utt.id]}; "
                    "give the line a unique 'id' or delete it"
                )
                known = None if math.isnan(utt.duration) else utt.duration
                yield Skip(utt.id, utt.audio_filepath, DUPLICATE_ID, message, utt.offset, known)
            continue
        first_line[utt.id] = line_no
        if mine:
            yield _fill_duration(utt)


def _walk_sorted(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def build_manifest(
    root: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS
) -> Iterator[Utterance | Skip]:
    """Walk ``root`` in sorted order and yield one record per audio file.

    An ``Utterance`` for a readable file (``audio_filepath`` relative to ``root``, the
    header's duration rounded to the millisecond, ``id`` the path without extension, as
    ``read_manifest`` names it for a manifest in ``root``), a ``Skip`` with the reason for
    one whose header cannot be read: the caller writes the first and reports the others,
    so nothing vanishes. mp3 is read by libsndfile >= 1.1 (soundfile >= 0.11 wheels); m4a
    and other containers need ffmpeg (see ``audio.fallback_decoder_available``) and
    otherwise come back as a ``Skip`` with reason ``unreadable`` and a message saying so.

    Raises:
        NotADirectoryError: when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; give the folder that holds the audio")
    wanted = {e.lower() for e in extensions}
    for path in _walk_sorted(root):
        if path.suffix.lower() not in wanted:
            continue
        rel = path.relative_to(root).as_posix()
        record_id = os.path.splitext(rel)[0]
        try:
            duration, _, _ = audio_info(path)
        except AudioError as e:
            logger.info("not in manifest: %s (%s)", rel, e.reason)
            yield Skip(record_id, rel, e.reason, e.message)
            continue
        yield Utterance(record_id, rel, round(duration, DURATION_DECIMALS))


def manifest_line(utt: Utterance, root: str | os.PathLike) -> dict[str, Any]:
    """A ``build_manifest`` record as a NeMo line whose path is absolute (usable from anywhere)."""
    return {"audio_filepath": str((Path(root) / utt.audio_filepath).resolve()), "duration": utt.duration}


def write_folder_manifest(
    root: str | os.PathLike, out: str | os.PathLike
) -> tuple[list[Utterance], list[Skip]]:
    """Write ``out`` (atomic): one NeMo line per readable audio file under ``root``, absolute paths.

    Returns the files written and the ones left out, with the reason.
    """
    good: list[Utterance] = []
    bad: list[Skip] = []
    for record in build_manifest(root):
        (bad if isinstance(record, Skip) else good).append(record)
    atomic_write_jsonl(out, (manifest_line(u, root) for u in good))
    return good, bad


__all__ = [
    "AUDIO_EXTENSIONS",
    "build_manifest",
    "manifest_line",
    "parse_shard",
    "read_manifest",
    "shard_filter",
    "write_folder_manifest",
]
