"""``export_labels``: teacher labels or pseudo-labels out to the formats peers train from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from .common import fresh_dir

Format = Literal["hf", "lhotse", "kaldi"]
FORMATS: tuple[str, ...] = ("hf", "lhotse", "kaldi")


def export_labels(
    labels: str | os.PathLike,
    fmt: Format,
    out: str | os.PathLike,
    *,
    teacher_labels: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> int:
    """Write ``labels`` (labels.jsonl or kept.jsonl) into the folder ``out`` as ``fmt``; returns records.

    ``hf``: a ``datasets`` dataset saved to disk (``hf.export_hf``); ``lhotse``: cuts,
    recordings and supervisions manifests (``lhotse.export_lhotse``); ``kaldi``: a data
    directory (``kaldi.export_kaldi``). The folder appears whole or not at all.

    Args:
        labels: JSON Lines from ``asr-distill label`` (``TeacherLabel``) or ``asr-distill
            filter`` (``PseudoLabel``).
        fmt: one of ``FORMATS``.
        out: the folder to create (must not exist, or be empty, unless ``overwrite``).
        teacher_labels: the teacher's labels, joined by id to give pseudo-labels their raw
            decoding statistics (``no_speech_prob``, ``compression_ratio``, ``temperature``).
        overwrite: replace an existing ``out``.

    Raises:
        ValueError: an unknown ``fmt``, or a label whose audio or ids the format cannot hold.
        FileExistsError: ``out`` exists and is not empty, without ``overwrite``.
        ImportError: naming the ``interop`` extra when ``datasets``/``lhotse`` are missing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    if not Path(labels).is_file():
        raise FileNotFoundError(f"{labels} does not exist (give labels.jsonl or kept.jsonl)")
    if fmt == "hf":
        from .hf import export_hf as write
    elif fmt == "lhotse":
        from .lhotse import export_lhotse as write
    else:
        from .kaldi import export_kaldi as write
    with fresh_dir(out, overwrite) as tmp:
        return write(labels, tmp, teacher_labels)
