"""JSON Lines I/O that survives pre-emption: lazy reads, resumable appends, atomic files.

A labeling job may be killed at any instant. The writer appends one batch per
``write`` call and fsyncs it; on reopen it cuts a torn last line and reports the ids
already written, so a rerun skips them. An exclusive lock stops two processes from
interleaving lines in one file.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import os
import shlex
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from .records import to_json


class OutputLockedError(RuntimeError):
    """Another process is writing the same output file."""


class OutputNotWritableError(RuntimeError):
    """The output cannot be written (read-only directory, full disk...)."""


class UnsafeOutputError(ValueError):
    """Writing this output would destroy data the toolkit did not write (or its own input)."""


GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@contextmanager
def _open_bytes(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    with open(path, "rb") as f:
        if f.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                yield g
        else:
            yield f


def _raw_lines(f: IO[bytes]) -> Iterator[bytes]:
    r"""Lines split on ``\n``, ``\r\n`` or a lone ``\r`` (text mode's universal newlines).

    JSON never holds a raw CR or LF inside a value, so splitting the bytes is safe.
    """
    for raw in f:
        body = raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw
        yield from body.split(b"\r") if b"\r" in body else (body,)


def _decode(raw: bytes, path: str | os.PathLike, n: int) -> str | ValueError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return ValueError(
            f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            "save the file as UTF-8"
        )


def _parse(line: str, path: str | os.PathLike, n: int) -> dict[str, Any] | ValueError:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return ValueError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno})")
    if not isinstance(obj, dict):
        return ValueError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """Yield ``(line_number, object)`` lazily; a broken line yields its exception instead.

    Callers decide whether a bad line is fatal (a config) or a recorded skip (a manifest).
    Blank lines are ignored. Line numbers start at 1. Files from other tools are met
    half-way: a leading UTF-8 BOM is skipped, gzip is read by its magic bytes (``.gz`` or
    not), and a line that is not UTF-8 is one broken line, not the end of the file.
    """
    with _open_bytes(path) as f:
        n = 0
        try:
            for n, raw in enumerate(_raw_lines(f), start=1):
                if n == 1:
                    if raw.startswith(UTF16_BOMS):
                        yield n, ValueError(f"{path}: is UTF-16 text; save it as UTF-8")
                        return
                    raw = raw.removeprefix(UTF8_BOM)
                if not raw.strip():
                    continue
                line = _decode(raw, path, n)
                yield n, line if isinstance(line, Exception) else _parse(line, path, n)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a truncated or corrupt .gz
            yield (
                n + 1,
                ValueError(
                    f"{path}:{n + 1}: the gzip stream breaks off here ({e}); the lines before it were read"
                ),
            )


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


HOLDER_MAX_CHARS = 300  # a lock file names its holder in one short line


def _holder_line() -> str:
    """``pid N: command line`` of this process, on one line with control characters escaped."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    command = shlex.join(argv).encode("unicode_escape").decode("ascii")
    if len(command) > HOLDER_MAX_CHARS:
        command = command[: HOLDER_MAX_CHARS - 3] + "..."
    return f"pid {os.getpid()}: {command}"


def _read_holder(f: IO) -> str:
    try:
        f.seek(0)
        text = f.read(HOLDER_MAX_CHARS + 64).strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return text.splitlines()[0] if text else "a process that has not written its name yet"


def acquire_lock(lock_path: str | os.PathLike, guarded: str | os.PathLike, what_to_do: str) -> IO:
    """Take an exclusive ``flock`` on ``lock_path`` without waiting; returns the open lock file.

    The kernel drops the lock when the process dies, so a ``kill -9`` never leaves a
    stale lock behind, while a live second process on the same output is refused. The
    holder writes its pid and command line into the file, so the refusal can name it.

    Raises:
        OutputLockedError: another live process holds it (the message names ``guarded``
            and the holder).
        OutputNotWritableError: the lock file cannot be created (read-only folder...).
    """
    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "a+", encoding="utf-8")
    except OSError as e:
        raise OutputNotWritableError(_describe_os_error(Path(guarded), e)) from e
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(f)
        f.close()
        raise OutputLockedError(
            f"{guarded} is being written by another process ({holder}; lock {lock_path}); {what_to_do}"
        ) from None
    try:
        f.truncate(0)
        f.write(_holder_line() + "\n")
        f.flush()
    except OSError:
        pass  # the lock holds without the name (full disk): the refusal is just less precise
    return f


def release_lock(f: IO) -> None:
    """Clear the holder's name and drop the lock (closing the file drops it too)."""
    try:
        f.truncate(0)
    except OSError:
        pass
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    f.close()


@contextmanager
def exclusive_lock(
    lock_path: str | os.PathLike, guarded: str | os.PathLike, what_to_do: str
) -> Iterator[None]:
    """``acquire_lock`` for the duration of a block."""
    f = acquire_lock(lock_path, guarded, what_to_do)
    try:
        yield
    finally:
        release_lock(f)


def lock_path_for(out: str | os.PathLike, *, folder: bool) -> Path:
    """The lock file guarding an output: ``labels.jsonl.lock`` beside a file, ``out/.lock`` in a folder.

    These are the names the writers already used, so an old job and a new one exclude each other.
    """
    out = Path(out)
    return out / ".lock" if folder else out.with_name(out.name + ".lock")


@contextmanager
def output_lock(
    out: str | os.PathLike,
    *,
    folder: bool,
    what_to_do: str = "wait for it to finish, or give this job another --out",
) -> Iterator[Path]:
    """Hold the lock of the output file or folder ``out`` for a block; yields the lock path.

    The one lock every writer takes (label, merge, filter, review, export, evaluate, report,
    train, run): a second writer on the same output is refused at once, naming the first.

    Raises:
        OutputLockedError: another live process writes ``out``.
        OutputNotWritableError: the lock cannot be created there.
    """
    lock = lock_path_for(out, folder=folder)
    with exclusive_lock(lock, out, what_to_do):
        yield lock


def lock_holder(lock_path: str | os.PathLike) -> str | None:
    """Who holds ``lock_path`` (``"pid N: command"``), or None when nobody does.

    Creates nothing: a missing lock file is a free lock. Used by readers that must not
    consume a file while it is being written (merge refuses while a shard is locked).
    """
    try:
        f = open(lock_path, encoding="utf-8")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(f)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


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
        self._lock = acquire_lock(
            self.path.with_name(self.path.name + ".lock"),
            self.path,
            "wait for it, or give this job another --out",
        )
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
            for n, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break  # torn by a kill mid-write: the batch it belonged to is redone
                self.done_ids.add(self._id_of(raw, n))
                good_end += len(raw)
        if good_end < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def _id_of(self, raw: bytes, n: int) -> str:
        """The id of one whole line; a whole line we could not have written stops the job.

        Only a torn last line is ours to cut; anything else means ``path`` is not this
        writer's file, and appending to it (or cutting it) would damage someone's data.
        """
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or self.id_key not in obj:
            raise UnsafeOutputError(
                f"{self.path} line {n} is not a record this toolkit writes (no JSON object with "
                f"'{self.id_key}'); it is not a resumable output: give another --out"
            )
        return str(obj[self.id_key])

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
        """Close the file and release the lock, even when closing fails."""
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


def _file_mode() -> int:
    """The mode ``open`` gives a new file under this process's umask (read once, at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[TextIO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash (or an exception in the block) leaves the old file, or none, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would make results unreadable to the group
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
