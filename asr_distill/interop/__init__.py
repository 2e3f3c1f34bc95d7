"""Pseudo-labels out to the formats peers train from, and their datasets in as labeling input.

- :mod:`.export`: :func:`export_labels`, labels.jsonl/kept.jsonl to ``hf``, ``lhotse`` or ``kaldi``.
- :mod:`.hf`: a Hugging Face dataset saved to disk (Distil-Whisper's ``whisper_transcript``).
- :mod:`.lhotse`: a lhotse CutSet with its recordings and supervisions.
- :mod:`.kaldi`: a Kaldi data directory, through lhotse's exporter.
- :mod:`.inputs`: :func:`read_input`, a manifest, a saved dataset or a CutSet as utterances.

``datasets`` and ``lhotse`` are the optional ``interop`` extra, imported only when used.
"""

from __future__ import annotations

from .export import FORMATS, export_labels
from .inputs import default_cache, detect_input, read_input

__all__ = ["FORMATS", "default_cache", "detect_input", "export_labels", "read_input"]
