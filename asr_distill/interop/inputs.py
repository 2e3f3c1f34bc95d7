"""Labeling input beyond NeMo manifests: a saved Hugging Face dataset or a lhotse CutSet.

:func:`read_input` is ``manifest.read_manifest`` for every input the labeler takes: the same
``Utterance``/``Skip`` stream, the same ``--shard`` rule (row index mod N) and the same
``duplicate_id`` skip, so ``label``, ``--shard`` and ``--workers`` work on each alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from ..manifest import DUPLICATE_ID, read_manifest, shard_filter
from ..records import Skip, Utterance

InputKind = Literal["hf", "lhotse"]


def _first_record(path: Path) -> dict:
    from ..jsonl import iter_jsonl

    try:
        for _, obj in iter_jsonl(path):
            return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        pass
    return {}


def detect_input(path: str | os.PathLike) -> InputKind | None:
    """What kind of labeling input ``path`` is, when it is not a NeMo manifest or an audio folder.

    ``hf`` for a ``save_to_disk`` folder, ``lhotse`` for a lhotse manifest (or a folder holding
    ``cuts.jsonl.gz``), None for anything else.
    """
    from .hf import is_hf_dataset
    from .lhotse import CUTS, lhotse_kind

    p = Path(path)
    if p.is_dir():
        return "hf" if is_hf_dataset(p) else "lhotse" if (p / CUTS).is_file() else None
    if p.is_file() and lhotse_kind(_first_record(p)):
        return "lhotse"
    return None


def default_cache(path: str | os.PathLike) -> Path:
    """Where a dataset's embedded audio is written for the labeler: ``<input>.audio`` beside it."""
    p = Path(path)
    return p.with_name(f"{p.name}.audio")


def read_input(
    path: str | os.PathLike, shard: tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None
) -> Iterator[Utterance | Skip]:
    """Stream any labeling input as Utterances, or Skips for rows that cannot be used.

    Args:
        path: a NeMo manifest, a saved HF dataset folder, or a lhotse CutSet/RecordingSet.
        shard: ``(I, N)``: keep rows whose 0-based index is I mod N (ids of all rows are checked).
        cache_dir: where a dataset's embedded audio bytes are written as files (the labels
            point at them, so keep it); default ``default_cache(path)``. Only this shard's rows
            are written, and a file already there is reused.
    """
    kind = detect_input(path)
    if kind is None:
        yield from read_manifest(path, shard=shard)
        return
    if kind == "hf":
        from .hf import hf_entries

        entries = hf_entries(path, Path(cache_dir) if cache_dir else default_cache(path))
    else:
        from .lhotse import lhotse_entries

        entries = lhotse_entries(path)
    first: dict[str, str] = {}
    for index, (utt_id, where, resolve) in enumerate(entries):
        mine = shard_filter(index, shard)
        if utt_id in first:
            if mine:
                yield Skip(
                    utt_id,
                    where,
                    DUPLICATE_ID,
                    f"{where}: id {utt_id!r} already used by {first[utt_id]}; give each row a unique id",
                )
            continue
        first[utt_id] = where
        if mine:
            yield resolve()
