"""Teacher labels made in memory, for tests of the rules and stages that read them.

A label from ``make_label`` has one token per word, all scored alike, so a test sets the
confidence signals it is about and leaves the rest plausible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from asr_distill.records import Provenance, TeacherLabel, TokenScore


def make_label(
    text: str = "enter seven",
    *,
    id: str = "u1",
    duration: float = 2.0,
    avg_logprob: float = -0.2,
    no_speech_prob: float = 0.05,
    compression_ratio: float = 1.0,
    tokens: Iterable[TokenScore] | None = None,
    teacher: str = "base",
    **kw,
) -> TeacherLabel:
    """A teacher label with one token per word; ``kw`` sets other fields (``ref_text``...)."""
    if tokens is None:
        tokens = tuple(TokenScore(f" {w}", avg_logprob, 0.5, 10.0, 2.0) for w in text.split())
    prov = Provenance(teacher, "0" * 64, "whisper", {"entropy_alpha": 0.33}, "0.1.0")
    return TeacherLabel(
        id=id,
        audio_filepath=f"/data/{id}.flac",
        offset=0.0,
        duration=duration,
        text=text,
        language="en",
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        compression_ratio=compression_ratio,
        temperature=0.0,
        tokens=tuple(tokens),
        provenance=prov,
        **kw,
    )


def write_labels(path: Path, labels: Iterable[TeacherLabel]) -> Path:
    """Write ``labels`` as a JSON Lines label file (the label stage's output format)."""
    path.write_text("".join(json.dumps(lab.to_dict()) + "\n" for lab in labels))
    return path


__all__ = ["make_label", "write_labels"]
