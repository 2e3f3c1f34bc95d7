"""JSON Lines I/O that survives pre-emption: lazy reads, resumable appends, atomic files.

A labeling job may be killed at any instant. The writer appends one batch per
``write`` call and fsyncs it; on reopen it cuts a torn last line and reports the ids
already written, so a rerun skips them. An exclusive lock stops two processes from
interleaving lines in one file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from .records import to_json


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file."""


class OutputNotWritableError(RuntimeError):
    """The output cannot be written (read-only directory, full disk...)."""


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """Yield ``(line_number, object)`` lazily; a broken line yields its exception instead.

    Callers decide whether a bad line is fatal (a config) or a recorded skip (a manifest).
    Blank lines are ignored. Line numbers start at 1.
    """
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, ValueError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield n, ValueError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
                continue
            yield n, obj


def read_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the objects of a file written by this toolkit; a broken line is an error."""
    for _, obj in iter_jsonl(path):
        if isinstance(obj, Exception):
            raise obj
        yield obj


def _describe_os_error(path: Path, e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"no space left on the device holding {path}; free space and rerun (finished lines are kept)"
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"cannot write {path}: {e.strerror}; choose a writable --out (finished lines are kept)"
    return f"cannot write {path}: {e}"


def _line(record: Any) -> str:
    """A record (dataclass or dict) as one JSON line with its newline."""
    return (json.dumps(record, ensure_ascii=False) if isinstance(record, dict) else to_json(record)) + "\n"


def acquire_lock(lock_path: str | os.PathLike, guarded: str | os.PathLike, what_to_do: str) -> IO:
    """Take an exclusive ``flock`` on ``lock_path`` without waiting; returns the open lock file.

    The kernel drops the lock when the process dies, so a ``kill -9`` never leaves a
    stale lock behind, while a live second process on the same output is refused.

    Raises:
        OutputLockedError: another live process holds it (the message names ``guarded``).
        OutputNotWritableError: the lock file cannot be created (read-only folder...).
    """
    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+")
    except OSError as e:
        raise OutputNotWritableError(_describe_os_error(Path(guarded), e)) from e
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise OutputLockedError(
            f"{guarded} is being written by another process (lock {lock_path}); {what_to_do}") from None
    return f


def release_lock(f: IO) -> None:
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    f.close()


@contextmanager
def exclusive_lock(lock_path: str | os.PathLike, guarded: str | os.PathLike,
                   what_to_do: str) -> Iterator[None]:
    """``acquire_lock`` for the duration of a block."""
    f = acquire_lock(lock_path, guarded, what_to_do)
    try:
        yield
    finally:
        release_lock(f)


class ResumableJsonlWriter:
    """Append records to a JSON Lines file that a rerun can resume.

    Use as a context manager. ``done_ids`` holds the ids already in the file when it
    was opened (after any torn last line was cut). Each ``write`` appends one batch in a
    single write and fsyncs, so a kill loses at most the batch in flight.
    """

    def __init__(self, path: str | os.PathLike, *, id_key: str = "id"):
        self.path = Path(path)
        self.id_key = id_key
        self.done_ids: set[str] = set()
        self._file = None
        self._lock = None

    def __enter__(self) -> ResumableJsonlWriter:
        self._lock = acquire_lock(self.path.with_name(self.path.name + ".lock"), self.path,
                                  "wait for it, or give this job another --out")
        self._repair_and_scan()
        try:
            self._file = open(self.path, "ab", buffering=0)
        except OSError as e:
            self.close()
            raise OutputNotWritableError(_describe_os_error(self.path, e)) from e
        return self

    def _repair_and_scan(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn by a kill mid-write: the batch it belonged to is redone
                try:
                    obj = json.loads(raw)
                except ValueError:
                    break
                self.done_ids.add(str(obj[self.id_key]))
                good_end += len(raw)
        if good_end < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def write(self, records: Iterable[Any]) -> int:
        """Append records (dataclasses or dicts) as one durable batch; returns the count."""
        lines = [_line(r) for r in records]
        if not lines:
            return 0
        data = "".join(lines).encode("utf-8")
        fd = self._file.fileno()  # unbuffered, append-only: nothing lingers in a buffer
        start = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as e:
            self._rollback(start)
            raise OutputNotWritableError(_describe_os_error(self.path, e)) from e
        return len(lines)

    def _rollback(self, size: int) -> None:
        """Cut a half-written batch (full disk), so the file ends on a whole line again."""
        try:
            os.ftruncate(self._file.fileno(), size)
        except OSError:
            pass  # the next open repairs a torn last line anyway

    def close(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
        finally:
            self._file = None
            if self._lock is not None:
                release_lock(self._lock)
                self._lock = None

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[TextIO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash (or an exception in the block) leaves the old file, or none, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file atomically (see ``atomic_open``)."""
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write records as a JSON Lines file atomically; returns the count.

    Streams into the temporary file, so memory stays flat for long manifests.
    """
    n = 0
    with atomic_open(path) as f:
        for r in records:
            f.write(_line(r))
            n += 1
    return n
