"""What the exporters and readers share: the optional imports, one flat row per label, safe ids.

A label file holds either the teacher's records (``TeacherLabel``, from ``asr-distill label``)
or the filter's (``PseudoLabel``, kept.jsonl/dropped.jsonl from ``asr-distill filter``).
:func:`label_row` flattens either into the same columns, so every format carries the same
confidence and provenance fields whichever stage the file came from.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ..jsonl import output_lock
from ..outputs import MARKER_NAME
from ..records import PseudoLabel, TeacherLabel

EXPORT_KIND = "labels_export"  # the marker an export leaves in its folder

EXTRA = "interop"  # pyproject's optional dependencies: pip install 'asr_distill[interop]'
LabelRecord = TeacherLabel | PseudoLabel
_UNSAFE = re.compile(r"\s+")  # Kaldi and lhotse ids are whitespace-separated fields


def require(module: str) -> ModuleType:
    """Import an optional dependency, or fail with the extra that installs it.

    Raises:
        ImportError: naming the module and ``pip install 'asr_distill[interop]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is not installed; the Hugging Face / lhotse / Kaldi formats need the "
            f"'{EXTRA}' extra: pip install 'asr_distill[{EXTRA}]' ({e})"
        ) from e


def read_label_records(path: str | os.PathLike) -> list[LabelRecord]:
    """Teacher labels or pseudo-labels, whichever the file holds (told apart by its first record).

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: naming the line of a record that is neither.
    """
    from ..jsonl import read_jsonl
    from ..quality.filter import read_labels, read_pseudo_labels

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist (give labels.jsonl from `asr-distill label` "
            "or kept.jsonl from `asr-distill filter`)"
        )
    first = next(read_jsonl(path), {})
    return read_pseudo_labels(path) if "teacher_text" in first else read_labels(path)


def label_row(rec: LabelRecord, teacher: TeacherLabel | None = None) -> dict[str, Any]:
    """One label as flat columns: where its audio is, its texts, confidence and provenance.

    A pseudo-label keeps its scores but not the teacher's raw decoding statistics; give the
    teacher's record of the same id as ``teacher`` to fill ``no_speech_prob``,
    ``compression_ratio`` and ``temperature`` (None otherwise).
    """
    raw = rec if isinstance(rec, TeacherLabel) else teacher
    pseudo = rec if isinstance(rec, PseudoLabel) else None
    prov = rec.provenance
    scores = dict(pseudo.scores) if pseudo else {}
    return {
        "id": rec.id,
        "audio_filepath": rec.audio_filepath,
        "offset": float(rec.offset),
        "duration": float(rec.duration),
        "text": rec.text,
        "teacher_text": pseudo.teacher_text if pseudo else rec.text,
        "ref_text": rec.ref_text,
        "language": rec.language,
        "speaker": rec.speaker,
        "avg_logprob": raw.avg_logprob if raw else scores.get("avg_logprob"),
        "no_speech_prob": raw.no_speech_prob if raw else None,
        "compression_ratio": raw.compression_ratio if raw else None,
        "temperature": raw.temperature if raw else None,
        "score_name": pseudo.score_name if pseudo else None,
        "score": pseudo.score if pseudo else None,
        "scores": scores or None,
        "drop_reasons": list(pseudo.drop_reasons) if pseudo else [],
        "teacher": prov.teacher,
        "weights_sha256": prov.weights_sha256,
        "backend": prov.backend,
        "toolkit_version": prov.toolkit_version,
    }


def label_rows(
    path: str | os.PathLike, teacher_labels: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """:func:`label_row` of every record in ``path``, joined by id with ``teacher_labels`` if given."""
    records = read_label_records(path)
    teachers: Mapping[str, TeacherLabel] = {}
    if teacher_labels is not None:
        from ..quality.filter import read_labels

        teachers = {t.id: t for t in read_labels(teacher_labels)}
    return [label_row(r, teachers.get(r.id)) for r in records]


def safe_id(text: str) -> str:
    """``text`` with each run of whitespace made ``_`` (ids are one field in Kaldi and lhotse files)."""
    return _UNSAFE.sub("_", text.strip()) or "_"


def short_hash(text: str) -> str:
    """Eight hex digits of ``text``'s SHA-1: tells apart names that would otherwise clash."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def recording_ids(paths: Iterable[str]) -> dict[str, str]:
    """A stable recording id per audio file: its name without extension, hashed apart on a clash."""
    by_stem: dict[str, list[str]] = {}
    for p in sorted(set(paths)):
        by_stem.setdefault(safe_id(Path(p).stem), []).append(p)
    out = {}
    for stem, group in by_stem.items():
        for p in group:
            out[p] = stem if len(group) == 1 else f"{stem}-{short_hash(p)}"
    return out


@contextmanager
def fresh_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` when the block succeeds.

    A failed export leaves the old ``out`` (or none), never half a dataset. The export holds
    ``out``'s lock (``OUT.lock`` beside it, since the folder itself is swapped) and marks what
    it writes as its own; ``overwrite`` replaces only an earlier export, never a folder the
    toolkit did not write.

    Raises:
        FileExistsError: ``out`` is a file, or a non-empty folder that is not an earlier export
            (even with ``overwrite``), or an earlier export without ``overwrite``.
        OutputLockedError: another process writes ``out``.
    """
    out = Path(out)
    with output_lock(out, folder=False):
        _check_replaceable(out, overwrite)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / MARKER_NAME).write_text(json.dumps({"kind": EXPORT_KIND}) + "\n", encoding="utf-8")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)


def _check_replaceable(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` this export may not replace (see :func:`fresh_dir`)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(f"{out} exists and is not a folder; give a new --out")
    if not out.exists() or not any(out.iterdir()):
        return
    ours = (out / MARKER_NAME).is_file() and EXPORT_KIND in (out / MARKER_NAME).read_text(errors="replace")
    if not ours:
        raise FileExistsError(
            f"{out} holds files this toolkit did not write; give a new --out (it is never replaced)"
        )
    if not overwrite:
        raise FileExistsError(f"{out} holds an earlier export; give a new --out, or --force to replace it")
