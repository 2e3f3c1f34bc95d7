"""Output-path safety: a writer never clobbers a file the toolkit did not write, nor its own input.

Every command that writes (label, merge, filter, review, export, evaluate, report, train,
run) names an *output kind* and calls ``guard_output`` before it opens anything for
writing. The check is by content, not by name: a file called ``labels.jsonl`` full of
someone's notes is refused, an empty file or our own half-finished output is resumed.

- An output equal to any input (same path after resolving links, or the same inode) is
  refused, with or without ``force``: there is nothing sensible to write there.
- A symlink as a *file* output is refused, with or without ``force``: appending writers
  would write through it and atomic writers would replace the link, so where the data
  lands would depend on the command. Give the real path. A symlinked *folder* is resolved
  and its target checked like any folder: a run folder linked to a bigger disk is normal,
  and every write lands inside the target either way.
- An existing output that is not ours is refused unless ``force``. A folder is ours when
  it holds our marker file (``claim_output`` writes it), or when every entry in it is a
  name this kind writes (folders written before the marker existed) whose content checks.
"""

from __future__ import annotations

import fnmatch
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .jsonl import UnsafeOutputError, lock_path_for, output_lock

MARKER_NAME = ".asr_distill_output"  # {"kind": ...}: this folder was created by that writer
HEAD_BYTES = 1 << 16  # the first lines of a file decide whether it is ours
ALWAYS_OURS = (MARKER_NAME, ".lock", "*.lock", ".*.tmp", ".*.tmp.*", ".done")

LABEL_KEYS = frozenset({"id", "audio_filepath", "text", "provenance"})  # records.TeacherLabel
SKIP_KEYS = frozenset({"id", "audio_filepath", "reason", "message"})  # records.Skip
PSEUDO_LABEL_KEYS = frozenset({"id", "text", "teacher_text", "drop_reasons", "provenance"})
AUDIT_KEYS = frozenset({"id", "decision"})
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Check = Callable[[Path], "str | None"]  # None: ours; else why not, for the message


def _head_lines(path: Path) -> list[bytes]:
    """The whole lines in the first ``HEAD_BYTES`` (a torn last line is the writer's to cut)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    lines = head.split(b"\n")
    return [x for x in lines[:-1] if x.strip()]


def _records(keys: Sequence[frozenset[str]], what: str) -> Check:
    """Each head line is a JSON object holding all of one of ``keys``."""

    def check(path: Path) -> str | None:
        for n, raw in enumerate(_head_lines(path), start=1):
            try:
                obj = json.loads(raw)
            except ValueError:
                return f"line {n} is not JSON"
            if not isinstance(obj, dict) or not any(k <= obj.keys() for k in keys):
                return f"line {n} is not {what}"
        return None

    return check


def _json_object(path: Path) -> str | None:
    if path.stat().st_size == 0:
        return None
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return "it is not JSON"
    return None if isinstance(obj, dict) else "it is not a JSON object"


def _png(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(len(PNG_MAGIC))
    return None if head in (b"", PNG_MAGIC) else "it is not a PNG image"


def _text(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    if b"\0" in head:
        return "it is binary, not text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a multi-byte character cut by the read is fine
            return "it is not UTF-8 text"
    return None


def _student_pt(path: Path) -> str | None:
    """An exported student: a torch zip whose pickle has our keys (read as bytes, never unpickled)."""
    if path.stat().st_size == 0:
        return None
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
            data = z.read(pkl) if pkl else b""
    except (zipfile.BadZipFile, OSError):
        return "it is not a torch checkpoint"
    keys = (b"model_state_dict", b"dims", b"asr_distill")
    return None if all(k in data for k in keys) else "it is not a student exported by this toolkit"


_labels = _records((LABEL_KEYS, SKIP_KEYS), "a teacher label or skip record")
_pseudo = _records((PSEUDO_LABEL_KEYS,), "a filtered pseudo-label")
_jsonl = _records((frozenset(),), "a JSON object")
_manifest = _records((frozenset({"audio_filepath"}),), "a manifest line")


@dataclass(frozen=True)
class OutputKind:
    """What one writer produces, and how to recognise it.

    Attributes:
        name: The kind's name (``labels``, ``filter_dir``...).
        folder: Whether the output is a folder (else a file).
        file_check: For a file kind, the content check.
        names: For a folder kind, ``{glob pattern: check}`` of what it writes at its top
            level; a ``None`` check accepts a sub-folder by name (its own files are the
            writer's business) or a file of any content.
        subfolders: Checks for files inside any sub-folder (evaluate writes one per model).
        apart_from_inputs: Refuse the folder an input lives in (review never writes there).
    """

    name: str
    folder: bool
    file_check: Check | None = None
    names: dict[str, Check | None] = field(default_factory=dict)
    subfolders: dict[str, Check | None] = field(default_factory=dict)
    apart_from_inputs: bool = False


_FILTER = {
    "kept.jsonl": _pseudo,
    "dropped.jsonl": _pseudo,
    "filter_report.json": _json_object,
    "calibration.json": _json_object,
    "calibration.png": _png,
}
_REVIEW = {
    "kept.jsonl": _pseudo,
    "dropped.jsonl": _pseudo,
    "review_audit.jsonl": _records((AUDIT_KEYS,), "a review audit record"),
    "review.tsv": _text,
    "review.html": _text,
    "review_report.json": _json_object,
}
_EVALUATE_MODEL = {
    "result.json": _json_object,
    "hyps.jsonl": _jsonl,
    "timing.json": _json_object,
    "alignment.jsonl": _jsonl,
    "alignment.txt": _text,
}
_CT2 = {
    "model.bin": None,
    "config.json": _json_object,
    "tokenizer.json": _json_object,
    "vocabulary.txt": _text,
    "vocabulary.json": _json_object,
    "preprocessor_config.json": _json_object,
    "asr_distill.json": _json_object,
}
_ONNX = {
    "encoder.onnx": None,
    "decoder.onnx": None,
    "config.json": _json_object,
    "asr_distill.json": _json_object,
}


def _ggml(path: Path) -> str | None:
    """A whisper.cpp model file: its first four bytes are the GGML magic (or it is empty)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return None if head in (b"", b"lmgg") else "it is not a GGML model file"


_TRAIN = {
    "checkpoints": None,
    "logs": None,
    "lightning_logs": None,
    "version_*": None,
    "feature_cache": None,
    "metrics.csv": _text,
    "hparams.yaml": _text,
    "student.yaml": _text,
    "config.yaml": _text,
    "train.log": _text,
}  # the pipeline's log of the training process
# Stage folders (``evaluate`` holds its .done, ``eval`` its results) and what the recipes put
# under the root before the first stage (``data``, ``slurm``, ``mini``).
_RUN = {
    name: None
    for name in (
        "label",
        "filter",
        "review",
        "train",
        "export",
        "eval",
        "evaluate",
        "report",
        "data",
        "slurm",
        "mini",
    )
} | {"data_card.json": _json_object, "data_card.md": _text, "pipeline_config.json": _json_object}


def _wav(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(12)
    return None if head == b"" or (head[:4] == b"RIFF" and head[8:12] == b"WAVE") else "it is not a WAV file"


_SYNTH = {"manifest.jsonl": _manifest, "*.wav": _wav}

OUTPUT_KINDS: dict[str, OutputKind] = {
    k.name: k
    for k in (
        OutputKind("labels", folder=False, file_check=_labels),  # label, merge (and each .skips/shard file)
        OutputKind("manifest", folder=False, file_check=_manifest),
        OutputKind("export", folder=False, file_check=_student_pt),
        OutputKind("export_ct2", folder=True, names=_CT2),
        OutputKind("export_onnx", folder=True, names=_ONNX),
        OutputKind("export_ggml", folder=False, file_check=_ggml),
        OutputKind("filter_dir", folder=True, names=_FILTER),
        OutputKind("review_dir", folder=True, names=_REVIEW, apart_from_inputs=True),
        OutputKind(
            "evaluate_dir",
            folder=True,
            names={"summary.json": _json_object, "table.md": _text},
            subfolders=_EVALUATE_MODEL,
        ),
        OutputKind("report_dir", folder=True, names={"report.md": _text, "*.png": _png}),
        OutputKind("train_dir", folder=True, names=_TRAIN),
        OutputKind("run_dir", folder=True, names=_RUN),
        OutputKind("synth_dir", folder=True, names=_SYNTH),
    )
}


def _kind(kind: str) -> OutputKind:
    try:
        return OUTPUT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown output kind {kind!r}; one of {', '.join(sorted(OUTPUT_KINDS))}") from None


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _check_inputs(out: Path, spec: OutputKind, inputs: Sequence[Path]) -> None:
    """Refuse an output that is (or, for a folder, would overwrite) one of the inputs."""
    real_out = Path(os.path.realpath(out))
    for given in inputs:
        inp = Path(given)
        if _same(out, inp):
            raise UnsafeOutputError(
                f"output {out} is the input {inp}; writing it would destroy the input: give another --out"
            )
        if not spec.folder:
            continue
        parent = Path(os.path.realpath(inp)).parent
        if spec.apart_from_inputs and parent == real_out:
            raise UnsafeOutputError(
                f"output folder {out} holds the input {inp}; write the result to "
                "another folder (--out), so the input is never replaced"
            )
        if parent == real_out and _matches(spec.names, inp.name):
            raise UnsafeOutputError(
                f"output folder {out} would overwrite the input {inp}; give another --out"
            )


def _matches(patterns: dict[str, Check | None] | Sequence[str], name: str) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def _file_problem(path: Path, check: Check | None) -> str | None:
    """Why ``path`` (an existing entry) is not ours, or None."""
    if path.is_symlink():
        return "it is a symbolic link"
    if path.is_dir():
        return None if check is None else "it is a folder"
    if not path.is_file():
        return "it is not a regular file"
    return None if check is None else check(path)


def _marker_kind(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def _folder_problem(folder: Path, spec: OutputKind) -> str | None:
    """Why an existing folder is not this kind's output, or None."""
    marked = _marker_kind(folder)
    if marked is not None and marked != spec.name:
        return f"it holds the output of another step ({marked})"
    for entry in sorted(folder.iterdir()):
        if _matches(ALWAYS_OURS, entry.name):
            continue
        pattern = _matches(spec.names, entry.name)
        if pattern is None and spec.subfolders and entry.is_dir() and not entry.is_symlink():
            problem = _subfolder_problem(entry, spec)
        elif pattern is None:
            problem = None if marked else "this step does not write it"
        else:
            problem = _file_problem(entry, spec.names[pattern])
        if problem:
            return f"{entry.name}: {problem}"
    return None


def _subfolder_problem(folder: Path, spec: OutputKind) -> str | None:
    for entry in sorted(folder.iterdir()):
        pattern = _matches(spec.subfolders, entry.name)
        if pattern is None and not _matches(ALWAYS_OURS, entry.name):
            return f"{entry.name}: this step does not write it"
        problem = _file_problem(entry, spec.subfolders[pattern]) if pattern else None
        if problem:
            return f"{entry.name}: {problem}"
    return None


def _shape_problem(out: Path, spec: OutputKind) -> str | None:
    """Why the existing ``out`` cannot be this kind's output whatever it holds, or None."""
    if spec.folder:
        return None if out.is_dir() else "it is a file, and this step writes a folder"
    if out.is_dir():
        return "it is a folder, and this step writes a file"
    return None if out.is_file() else "it is not a regular file"


def _existing_problem(out: Path, spec: OutputKind) -> str | None:
    """Why the existing ``out`` (of the right shape) is not this kind's resumable output, or None."""
    if spec.folder:
        return _folder_problem(out, spec)
    return spec.file_check(out) if spec.file_check else None


def check_output(
    out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), kind: str, force: bool = False
) -> Path:
    """Make sure writing ``out`` destroys nothing; returns ``out`` as a Path. Opens nothing for writing.

    Args:
        out: The output file or folder the command was given.
        inputs: Every file the command reads (manifest, labels, edits...).
        kind: A key of ``OUTPUT_KINDS``: says what ``out`` holds when it is ours.
        force: Replace an existing output that is not ours (``--force``). Never overrides
            the input and symlinked-file refusals.

    Raises:
        UnsafeOutputError: one line naming ``out`` and what to do.
        ValueError: ``kind`` is unknown (a programming error).
    """
    spec, out = _kind(kind), Path(out)
    _check_inputs(out, spec, [Path(p) for p in inputs])
    if not spec.folder and out.is_symlink():
        raise UnsafeOutputError(
            f"output {out} is a symbolic link (to {os.path.realpath(out)}); give the "
            "real path, so it is clear which file is written"
        )
    if not (out.exists() or out.is_symlink()):
        return out
    shape = _shape_problem(out, spec)
    if shape:  # --force replaces what is in an output, never a file with a folder or back
        raise UnsafeOutputError(f"output {out} exists and {shape}; give another --out")
    problem = None if force else _existing_problem(Path(os.path.realpath(out)) if spec.folder else out, spec)
    if problem:
        what = "folder" if spec.folder else "file"
        raise UnsafeOutputError(
            f"output {out} exists and is not a {kind} {what} written by this toolkit "
            f"({problem}); give another --out, or --force to replace it"
        )
    return out


def claim_output(out: str | os.PathLike, kind: str) -> None:
    """Create the folder ``out`` if needed and mark it as ``kind``'s output (folder kinds only)."""
    spec, out = _kind(kind), Path(out)
    if not spec.folder:
        raise ValueError(f"{kind} writes a file; only folder outputs carry a marker")
    out.mkdir(parents=True, exist_ok=True)
    if _marker_kind(out) != kind:
        (out / MARKER_NAME).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")


@contextmanager
def guard_output(
    out: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), kind: str, force: bool = False
) -> Iterator[Path]:
    """``check_output``, then hold the output's lock for the block, then check again under it.

    The one call a writer makes before writing: the first check refuses before the lock
    file is created, the second closes the gap between the check and the lock. Folder
    outputs are marked (``claim_output``) once the checks pass.

    Raises:
        UnsafeOutputError: see ``check_output``.
        OutputLockedError: another process writes ``out`` (the message names it).
        OutputNotWritableError: the lock cannot be created.
    """
    spec = _kind(kind)
    check_output(out, inputs=inputs, kind=kind, force=force)
    with output_lock(out, folder=spec.folder):
        path = check_output(out, inputs=inputs, kind=kind, force=force)
        if spec.folder:
            claim_output(path, kind)
        yield path


__all__ = [
    "MARKER_NAME",
    "OUTPUT_KINDS",
    "OutputKind",
    "UnsafeOutputError",
    "check_output",
    "claim_output",
    "guard_output",
    "lock_path_for",
]
