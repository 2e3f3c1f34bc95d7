"""Hugging Face ``datasets``: labels out as a saved dataset, and a saved dataset in as utterances.

Out: one row per label, saved with ``Dataset.save_to_disk`` (open it with
``datasets.load_from_disk``). The label text is in ``whisper_transcript``, the column
Distil-Whisper's ``training/run_distillation.py`` reads pseudo-labels from, and the
reference transcript in ``text`` (its ground-truth column; ``""`` when there is none, which
its ``--wer_threshold`` filter drops, so leave that flag off for reference-free labels).

The ``audio`` column holds the label's own samples: ``[offset, offset + duration)`` of the
source, decoded to 16 kHz mono and embedded as WAV bytes. An ``Audio`` value has no
offset, so a segment of a long recording cannot be a path; embedding every row the same
way makes the dataset self-contained (it survives ``push_to_hub`` and moving the disk).
``audio_filepath``/``offset``/``duration`` still say where the samples came from.

The rows are written through Arrow's struct storage and cast to ``Audio``, so writing needs
neither ``torchcodec`` nor ffmpeg (``datasets`` >= 4 decodes audio with ``torchcodec``: a
reader without it casts the column to ``Audio(decode=False)`` and gets the WAV bytes).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..records import Skip, Utterance
from .common import label_rows, require, safe_id, short_hash

SAMPLE_RATE = 16000  # audio.SAMPLE_RATE: what the labeler decoded
TEXT_COLUMN = "whisper_transcript"  # Distil-Whisper's pseudo-label column
REF_COLUMN = "text"  # ...and its ground-truth column
AUDIO_COLUMN = "audio"
# Input datasets name their columns in several ways; the first present is used.
ID_COLUMNS = ("id", "segment_id", "utterance_id", "file_id")
TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
STRING_COLUMNS = (
    "id",
    TEXT_COLUMN,
    REF_COLUMN,
    "teacher_text",
    "language",
    "speaker",
    "audio_filepath",
    "score_name",
    "teacher",
    "weights_sha256",
    "backend",
    "toolkit_version",
)
FLOAT_COLUMNS = (
    "offset",
    "duration",
    "avg_logprob",
    "no_speech_prob",
    "compression_ratio",
    "temperature",
    "score",
)


def _features(score_names: list[str]):
    datasets = require("datasets")
    string, number = datasets.Value("string"), datasets.Value("float64")
    spec: dict[str, Any] = {
        AUDIO_COLUMN: {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    }
    spec.update({c: string for c in STRING_COLUMNS})
    spec.update({c: number for c in FLOAT_COLUMNS})
    if score_names:
        spec["scores"] = {n: number for n in score_names}
    spec["drop_reasons"] = [string]
    return datasets.Features(spec)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """``(samples,)`` float audio as a WAV file: 16-bit PCM, or 32-bit float if it would clip."""
    import soundfile as sf

    buf = io.BytesIO()
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16" if peak <= 1.0 else "FLOAT")
    return buf.getvalue()


def _rows(labels: str, teacher_labels: str | None) -> Iterator[dict[str, Any]]:
    """The dataset's rows, the audio cut and encoded one row at a time (memory stays flat)."""
    from ..audio import AudioError, load_audio

    for row in label_rows(labels, teacher_labels):
        try:
            samples = load_audio(row["audio_filepath"], row["offset"], row["duration"])
        except AudioError as e:
            raise ValueError(
                f"label {row['id']!r}: its audio cannot be read for export: {e.message}"
            ) from None
        row[TEXT_COLUMN], row[REF_COLUMN] = row.pop("text"), row.pop("ref_text") or ""
        row[AUDIO_COLUMN] = {"bytes": wav_bytes(samples), "path": f"{safe_id(row['id'])}.wav"}
        if row["scores"] is None:
            row.pop("scores")
        yield row


def export_hf(labels: str | os.PathLike, out: Path, teacher_labels: str | os.PathLike | None = None) -> int:
    """Write the labels in ``labels`` as a dataset saved to the (empty) folder ``out``; returns rows.

    ``teacher_labels``: the teacher's labels.jsonl, to fill a pseudo-label's raw decoding
    statistics (see ``common.label_row``).
    """
    datasets = require("datasets")
    import tempfile

    rows = label_rows(labels, teacher_labels)
    score_names = sorted({k for r in rows for k in (r["scores"] or {})})
    kwargs = {
        "labels": str(labels),
        "teacher_labels": None if teacher_labels is None else str(teacher_labels),
    }
    with tempfile.TemporaryDirectory(prefix=".hf-cache-", dir=out.parent) as cache:
        ds = datasets.Dataset.from_generator(
            _rows,
            features=_features(score_names),
            cache_dir=cache,
            gen_kwargs=kwargs,
            fingerprint=short_hash(repr(kwargs)),
        )
        ds = ds.cast_column(AUDIO_COLUMN, datasets.Audio(sampling_rate=SAMPLE_RATE))
        ds.save_to_disk(str(out))
    return len(rows)


# --- in -----------------------------------------------------------------------------------


def is_hf_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    p = Path(path)
    return (p / "dataset_dict.json").is_file() or (
        (p / "state.json").is_file() and (p / "dataset_info.json").is_file()
    )


def _load(path: str | os.PathLike, split: str | None):
    """The saved dataset (one split of a DatasetDict), its audio column left undecoded."""
    datasets = require("datasets")
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) != 1:
            raise ValueError(f"{path} holds the splits {', '.join(ds)}; name one (split=...)")
        ds = ds[split or next(iter(ds))]
    if AUDIO_COLUMN not in ds.column_names:
        raise ValueError(f"{path} has no '{AUDIO_COLUMN}' column (columns: {', '.join(ds.column_names)})")
    return ds.cast_column(AUDIO_COLUMN, datasets.Audio(decode=False))


def _first(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in columns), None)


def _cached(audio: dict[str, Any], utt_id: str, cache_dir: Path) -> str | None:
    """A local file holding the row's audio: its own path, or its bytes written under ``cache_dir``."""
    if audio.get("bytes"):
        suffix = Path(audio.get("path") or "").suffix.lower() or ".wav"
        target = cache_dir / f"{safe_id(utt_id).replace('/', '_')[:80]}-{short_hash(utt_id)}{suffix}"
        if not target.is_file() or target.stat().st_size != len(audio["bytes"]):
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            tmp.write_bytes(audio["bytes"])
            os.replace(tmp, target)
        return str(target)
    path = audio.get("path")
    return os.path.abspath(path) if path and os.path.isfile(path) else None


def _utterance(
    row: dict[str, Any], utt_id: str, cache_dir: Path, text_col: str | None, speaker_col: str | None
) -> Utterance | Skip:
    from ..audio import AudioError, audio_info

    audio = row[AUDIO_COLUMN] or {}
    path = _cached(audio, utt_id, cache_dir)
    if path is None:
        where = str(audio.get("path"))
        return Skip(
            utt_id,
            where,
            "missing",
            f"row {utt_id!r}: its audio has no bytes and {where} is not a "
            "local file; save the dataset with its audio embedded",
        )
    try:
        duration, _, _ = audio_info(path)
    except AudioError as e:
        return Skip(utt_id, path, e.reason, e.message)
    text = row.get(text_col) if text_col else None
    speaker = row.get(speaker_col) if speaker_col else None
    return Utterance(utt_id, path, duration, 0.0, text or None, None if speaker is None else str(speaker))


def hf_entries(path: str | os.PathLike, cache_dir: Path, split: str | None = None):
    """``(id, where, resolve)`` per row; ``resolve()`` writes the row's audio and returns its record.

    Resolving lazily lets ``inputs.read_input`` check every id but write the audio of its
    own shard only. Ids come from the first of ``ID_COLUMNS`` present, else the row number.
    """
    ds = _load(path, split)
    cols = ds.column_names
    id_col, text_col, speaker_col = (
        _first(cols, ID_COLUMNS),
        _first(cols, TEXT_COLUMNS),
        _first(cols, SPEAKER_COLUMNS),
    )
    ids = [str(x) for x in ds[id_col]] if id_col else [f"row-{i:08d}" for i in range(len(ds))]
    for i, utt_id in enumerate(ids):
        yield (
            utt_id,
            f"{path}#{i}",
            (lambda i=i, u=utt_id: _utterance(ds[i], u, cache_dir, text_col, speaker_col)),
        )
