"""Human review: send the doubtful labels to a person, and apply what they decided.

``export`` takes labels from the review queue (:mod:`~asr_distill.quality.review_queue`:
most expected errors fixed per second of listening first; least confident first for
whole-utterance review or labels without word confidences), K of them, a confidence band,
or as many as fit in a listening budget, and writes them as a TSV and as one static HTML
page (:mod:`~asr_distill.quality.review_page`) whose doubtful words are highlighted, play
their audio, and are reviewed with the keyboard alone. ``import`` reads the JSON the page
saves (or the TSV, edited in a spreadsheet) and applies it: edited text replaces the label
with a ``review`` correction, rejected labels move to the dropped set with reason
``review_rejected``, and every decision is kept as a :class:`ReviewEntry` (reviewer, time,
old, new) on the label.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .consensus import DOUBTFUL_CONFIDENCE
from .correct import Correction
from .edits import ReviewEdit, read_edits, spreadsheet_cell
from .filter import PseudoLabel, ReviewEntry, Verdict
from .review_page import ReviewItem, render_html
from .review_queue import PAD, Pad, QueueEntry, review_queue, run_interval

REJECT_REASON = "review_rejected"
TSV_FIELDS = (
    "id",
    "decision",
    "text",
    "teacher_text",
    "score",
    "audio",
    "offset",
    "duration",
    "doubtful",
    "listen_s",
)
DOUBTFUL_SEPARATOR = " | "


@dataclass(frozen=True)
class ReviewExport:
    """What ``export`` wrote, and the review load it implies.

    ``audio_min`` is the audio of the exported clips, ``listen_min`` what the page plays
    (the doubtful runs, padded, where word timings allow).
    """

    tsv: str
    html: str
    items: int
    audio_min: float
    labeled_hours: float
    load_min_per_h: float
    selection: str
    listen_min: float = 0.0
    doubtful_words: int = 0
    unit: str = "word"


@dataclass(frozen=True)
class ReviewImport:
    """The labels after review, and the audit of what changed (``edits`` decisions read, by ``reviewer``)."""

    kept: tuple[PseudoLabel, ...]
    dropped: tuple[PseudoLabel, ...]
    audit: tuple[dict, ...]
    accepted: int
    edited: int
    rejected: int
    unknown_ids: tuple[str, ...]
    edits: int = 0
    reviewer: str = ""


def select_entries(
    labels: Sequence[PseudoLabel],
    *,
    k: int | None = None,
    band: tuple[float, float] | None = None,
    minutes: float | None = None,
    unit: str = "word",
    pad: Pad = PAD,
) -> list[QueueEntry]:
    """The head of the review queue: ``k`` labels, a score band, or a listening budget.

    ``band`` keeps the labels with ``band[0] <= score < band[1]``; ``minutes`` as many as
    fit in that much listening. In queue order either way, so a reviewer who stops early
    has done the most useful part.

    Raises:
        ValueError: unless exactly one of ``k``, ``band`` and ``minutes`` is given, or ``unit``
            is unknown.
    """
    if sum(x is not None for x in (k, band, minutes)) != 1:
        raise ValueError(
            "give exactly one of k (the first K labels of the queue), band (LO, HI) "
            "or minutes (a listening budget)"
        )
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if minutes is not None and not minutes >= 0:
        raise ValueError(f"minutes must be >= 0, got {minutes}")
    if band is not None:
        labels = [p for p in labels if p.score is not None and band[0] <= p.score < band[1]]
    queue = review_queue(labels, unit, pad=pad)
    if k is not None:
        return queue[:k]
    if band is not None:
        return queue
    out, heard = [], 0.0
    for e in queue:
        heard += e.listen_s
        if heard > minutes * 60:
            break
        out.append(e)
    return out


def audio_url(audio_filepath: str, page_dir: Path, offset: float, duration: float) -> str:
    """How the page refers to a label's audio: relative to the page when possible, else file://.

    A segment of a longer file gets a media fragment (``#t=start,end``), which browsers'
    ``<audio>`` honours, so the reviewer hears only that segment.
    """
    path, page_dir = Path(audio_filepath).resolve(), page_dir.resolve()
    try:
        shared = Path(os.path.commonpath([path, page_dir]))
    except ValueError:  # another drive (Windows)
        shared = None
    if shared is None or shared == Path(shared.anchor):
        url = path.as_uri()  # nothing in common but the root: an absolute URL says more
    else:
        url = Path(os.path.relpath(path, page_dir)).as_posix()
    from urllib.parse import quote

    url = url if url.startswith("file:") else quote(url)
    if offset > 0:
        url += f"#t={offset:.3f},{offset + duration:.3f}"
    return url


def _item(e: QueueEntry, page_dir: Path, pad: Pad = PAD) -> ReviewItem:
    """A queue entry as a page row: each doubtful run with the stretch of audio it plays."""
    p = e.label
    plays = []
    for run in e.runs:
        heard = run_interval(e.words, run, p.duration, pad) or (0.0, p.duration)
        plays.append((*run, *heard))
    return ReviewItem(
        p.id,
        audio_url(p.audio_filepath, page_dir, p.offset, p.duration),
        p.offset,
        p.duration,
        p.score,
        p.text,
        p.teacher_text,
        e.words,
        tuple(plays),
    )


def render_tsv(items: Sequence[ReviewItem]) -> str:
    """The review sheet: edit ``text``, set ``decision`` to accept or reject, save as TSV.

    ``doubtful`` lists the highlighted words (runs separated by `` | ``) and ``listen_s``
    the seconds the page plays. Cells a spreadsheet would run as formulas (``=``, ``+``,
    ``-``, ``@``...) start with a quote; :func:`~asr_distill.quality.edits.read_edits`
    removes it again.
    """
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(TSV_FIELDS)
    for it in items:
        runs = [" ".join(x.text for x in it.words[a : b + 1]) for a, b, _, _ in it.plays]
        heard = sum(e - s for _, _, s, e in it.plays) if it.plays else it.duration
        w.writerow(
            [
                spreadsheet_cell(it.id),
                "accept",
                spreadsheet_cell(it.text),
                spreadsheet_cell(it.teacher_text),
                "" if it.score is None else f"{it.score:.4f}",  # numbers we format are never formulas
                spreadsheet_cell(it.audio),
                f"{it.offset:.3f}",
                f"{it.duration:.3f}",
                spreadsheet_cell(DOUBTFUL_SEPARATOR.join(runs)),
                f"{heard:.3f}",
            ]
        )
    return buf.getvalue()


def _selection(
    n: int, k: int | None, band: tuple[float, float] | None, minutes: float | None, unit: str
) -> str:
    order = (
        "most expected errors fixed per second of listening first"
        if unit == "word"
        else "least confident first"
    )
    if k is not None:
        return f"the first {n} labels of the review queue ({order})"
    if band is not None:
        return f"labels with {band[0]:g} <= score < {band[1]:g} ({order})"
    return f"the {n} labels of the review queue that fit in {minutes:g} min of listening ({order})"


def export_review(
    labels: Sequence[PseudoLabel],
    out_dir: str | Path,
    *,
    k: int | None = None,
    band: tuple[float, float] | None = None,
    minutes: float | None = None,
    unit: str = "word",
    pad: Pad = PAD,
) -> ReviewExport:
    """Write ``review.tsv`` and ``review.html`` in ``out_dir`` for the head of the review queue.

    The review load is the audio of the exported clips, in minutes, per hour of ``labels``;
    ``listen_min`` is what the page plays (for ``unit="word"``: the doubtful runs with ``pad``).
    """
    from ..jsonl import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select_entries(labels, k=k, band=band, minutes=minutes, unit=unit, pad=pad)
    selection = _selection(len(chosen), k, band, minutes, unit)
    items = [_item(e, out, pad) for e in chosen]
    tsv, page = out / "review.tsv", out / "review.html"
    atomic_write_text(tsv, render_tsv(items))
    atomic_write_text(page, render_html(items, selection))
    audio_min = sum(e.label.duration for e in chosen) / 60
    listen_min = sum(e.listen_s if unit == "word" else e.label.duration for e in chosen) / 60
    hours = sum(p.duration for p in labels) / 3600
    return ReviewExport(
        str(tsv),
        str(page),
        len(chosen),
        round(audio_min, 3),
        round(hours, 4),
        round(audio_min / hours, 3) if hours else 0.0,
        selection,
        round(listen_min, 3),
        sum(w.doubtful for e in chosen for w in e.words),
        unit,
    )


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def apply_review(
    kept: Sequence[PseudoLabel],
    dropped: Sequence[PseudoLabel],
    edits: Sequence[ReviewEdit],
    *,
    reviewer: str,
    time: str | None = None,
) -> ReviewImport:
    """Apply reviewer decisions to kept labels; returns the new kept and dropped sets.

    Accepted with new text: the text is replaced and a ``review`` correction added.
    Rejected: moved to dropped with reason ``review_rejected`` (a verdict in its history).
    Every decision, edited or not, is appended to the label's ``review`` audit trail.
    Edits for ids not among ``kept`` are reported in ``unknown_ids`` and otherwise ignored.
    """
    time = time or now_iso()
    by_id = {e.id: e for e in edits}
    new_kept: list[PseudoLabel] = []
    new_dropped = list(dropped)
    audit: list[dict] = []
    accepted = edited = rejected = 0
    for p in kept:
        e = by_id.pop(p.id, None)
        if e is None:
            new_kept.append(p)
            continue
        new_text = e.text if e.decision == "accept" and e.text else p.text
        entry = ReviewEntry(reviewer, time, e.decision, p.text, new_text)
        audit.append({"id": p.id, **dataclasses.asdict(entry)})
        if e.decision == "reject":
            rejected += 1
            verdict = Verdict("review", False, f"rejected by {reviewer}")
            new_dropped.append(
                dataclasses.replace(
                    p,
                    review=(*p.review, entry),
                    filter_history=(*p.filter_history, verdict),
                    drop_reasons=(*p.drop_reasons, REJECT_REASON),
                )
            )
            continue
        accepted += 1
        if new_text != p.text:
            edited += 1
            p = dataclasses.replace(
                p, text=new_text, corrections=(*p.corrections, Correction("review", p.text, new_text))
            )
        new_kept.append(dataclasses.replace(p, review=(*p.review, entry)))
    return ReviewImport(
        tuple(new_kept),
        tuple(new_dropped),
        tuple(audit),
        accepted,
        edited,
        rejected,
        tuple(sorted(by_id)),
        len(edits),
        reviewer,
    )


__all__ = [
    "DOUBTFUL_CONFIDENCE",
    "REJECT_REASON",
    "ReviewEdit",
    "ReviewExport",
    "ReviewImport",
    "ReviewItem",
    "apply_review",
    "audio_url",
    "export_review",
    "read_edits",
    "render_html",
    "render_tsv",
    "select_entries",
]
