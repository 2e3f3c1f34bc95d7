"""Pseudo-labels with doubtful words, for tests of the review queue, page and simulated reviewer.

Real teacher labels go through the real filter with a second opinion that disagrees on one
word of each label (its last), so every label has exactly one doubtful word wherever the
teacher's own tokens do not already make more.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from asr_distill.quality.filter import FilterConfig, PseudoLabel, filter_labels, read_labels

ODD_WORD = "zebra"  # what the made-up second opinion hears instead of the teacher's last word


def disagreeing_opinion(label):
    """``label`` as another decoding that heard :data:`ODD_WORD` in place of its last word."""
    words = label.text.split()
    return dataclasses.replace(label, text=" ".join([*words[:-1], ODD_WORD]))


def doubtful_labels(label_file: Path, *, timings: bool = True) -> list[PseudoLabel]:
    """The labels of ``label_file``, every one kept, with word confidences from one disagreeing opinion.

    ``timings=False`` drops the word timings, as labels made without ``--word-timestamps``.
    """
    labels = [lab for lab in read_labels(label_file) if lab.text.split()]
    if not timings:
        labels = [dataclasses.replace(lab, words=()) for lab in labels]
    second = {lab.id: disagreeing_opinion(lab) for lab in labels}
    r = filter_labels(labels, second=second, config=FilterConfig(score="avg_logprob", threshold=-100))
    return [*r.kept, *r.dropped]


def timed_label_file(manifest: Path, out: Path, teacher) -> Path:
    """``manifest`` labeled by ``teacher`` with word timings (``--word-timestamps``), once; its path."""
    from asr_distill.label import LabelRun, label_to_file
    from asr_distill.teacher.options import LabelOptions

    if not out.is_file():
        label_to_file(
            manifest, out, LabelRun(teacher, options=LabelOptions(word_timestamps=True), batch_size=8)
        )
    return out


__all__ = ["ODD_WORD", "disagreeing_opinion", "doubtful_labels", "timed_label_file"]


def hand_label(text: str, ref: str | None, confidences, timings=(), **kw) -> PseudoLabel:
    """A pseudo-label whose word confidences and timings a test sets by hand.

    ``timings``: ``(word, start, end)`` (probability 0.9) or ``(word, start, end, probability)``.
    ``kw`` may set ``id``, ``duration``, ``label_text`` (a corrected text) and ``score``.
    """
    from asr_distill.records import Provenance, WordTiming

    return PseudoLabel(
        id=kw.pop("id", "u1"),
        audio_filepath="/data/u1.flac",
        offset=0.0,
        duration=kw.pop("duration", 4.0),
        text=kw.pop("label_text", text),
        teacher_text=text,
        language="en",
        score_name="avg_logprob",
        score=kw.pop("score", -0.3),
        scores={},
        corrections=(),
        filter_history=(),
        drop_reasons=(),
        provenance=Provenance("base", "0" * 64, "whisper", {}, "0"),
        ref_text=ref,
        word_confidence=tuple(confidences),
        words=tuple(WordTiming(*t) if len(t) == 4 else WordTiming(*t, 0.9) for t in timings),
    )
