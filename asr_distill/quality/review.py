"""Human review: send the doubtful labels to a person, and apply what they decided.

``export`` picks the K least-confident labels (or a confidence band) and writes them as a
TSV and as one static HTML page: an audio player per row, the label in an editable box,
accept/reject buttons, and a button that saves the decisions as JSON (a Blob download: no
server, the page works from a file:// URL or any static host). ``import`` reads that JSON
(or the TSV, edited in a spreadsheet) and applies it: edited text replaces the label with
a ``review`` correction, rejected labels move to the dropped set with reason
``review_rejected``, and every decision is kept as a :class:`ReviewEntry` (reviewer, time,
old, new) on the label.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .correct import Correction
from .edits import ReviewEdit, read_edits, spreadsheet_cell
from .filter import PseudoLabel, ReviewEntry, Verdict

REJECT_REASON = "review_rejected"
TSV_FIELDS = ("id", "decision", "text", "teacher_text", "score", "audio", "offset", "duration")


@dataclass(frozen=True)
class ReviewItem:
    """One row to review: the label, its confidence and where its audio is for the page."""

    id: str
    audio: str
    offset: float
    duration: float
    score: float | None
    text: str
    teacher_text: str


@dataclass(frozen=True)
class ReviewExport:
    """What ``export`` wrote, and the review load it implies."""

    tsv: str
    html: str
    items: int
    audio_min: float
    labeled_hours: float
    load_min_per_h: float
    selection: str


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


def _score_key(p: PseudoLabel) -> float:
    return -math.inf if p.score is None else p.score


def select_for_review(
    labels: Sequence[PseudoLabel], *, k: int | None = None, band: tuple[float, float] | None = None
) -> list[PseudoLabel]:
    """The ``k`` least-confident labels, or those with ``band[0] <= score < band[1]``.

    Least confident first either way, so a reviewer who stops early has done the worst.

    Raises:
        ValueError: unless exactly one of ``k`` and ``band`` is given.
    """
    if (k is None) == (band is None):
        raise ValueError("give exactly one of k (the K least-confident labels) or band (LO, HI)")
    ordered = sorted(labels, key=_score_key)
    if k is not None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        return ordered[:k]
    lo, hi = band
    return [p for p in ordered if p.score is not None and lo <= p.score < hi]


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


def _items(labels: Sequence[PseudoLabel], page_dir: Path) -> list[ReviewItem]:
    return [
        ReviewItem(
            p.id,
            audio_url(p.audio_filepath, page_dir, p.offset, p.duration),
            p.offset,
            p.duration,
            p.score,
            p.text,
            p.teacher_text,
        )
        for p in labels
    ]


def render_tsv(items: Sequence[ReviewItem]) -> str:
    """The review sheet: edit ``text``, set ``decision`` to accept or reject, save as TSV.

    Cells a spreadsheet would run as formulas (``=``, ``+``, ``-``, ``@``...) start with a quote;
    :func:`~asr_distill.quality.edits.read_edits` removes it again.
    """
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(TSV_FIELDS)
    for it in items:
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
            ]
        )
    return buf.getvalue()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>asr-distill review: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 6px; vertical-align: top; text-align: left; }}
textarea {{ width: 100%; min-width: 20em; font-size: 1.05em; }}
tr.reject {{ background: #fde8e8; }} tr.edited {{ background: #fff8e0; }}
.teacher {{ color: #666; font-size: 0.9em; }}
</style></head>
<body>
<h1>Review {n} labels</h1>
<p>{selection}. Listen, correct the text, choose accept or reject, then press <b>Save edits</b>:
the browser downloads <code>review_edits.json</code>; give it to
<code>asr-distill review import</code>.</p>
<p><label>Reviewer <input id="reviewer" name="reviewer" placeholder="your name"></label>
<button id="save" type="button" onclick="saveEdits()">Save edits</button></p>
<table id="review">
<thead><tr><th>#</th><th>audio</th><th>label (editable)</th><th>decision</th><th>score</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
const EXPORTED = {exported};
function rowEdits() {{
  const out = [];
  for (const tr of document.querySelectorAll("tr[data-id]")) {{
    const id = tr.dataset.id;
    const text = tr.querySelector("textarea").value;
    const choice = tr.querySelector("input[type=radio]:checked");
    out.push({{id: id, decision: choice ? choice.value : "accept", text: text}});
  }}
  return out;
}}
function saveEdits() {{
  const payload = {{
    reviewer: document.getElementById("reviewer").value || "anonymous",
    time: new Date().toISOString(),
    exported: EXPORTED,
    edits: rowEdits()
  }};
  const blob = new Blob([JSON.stringify(payload, null, 1)], {{type: "application/json"}});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "review_edits.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
  return payload;
}}
for (const tr of document.querySelectorAll("tr[data-id]")) {{
  const ta = tr.querySelector("textarea");
  ta.addEventListener("input", () => tr.classList.toggle("edited", ta.value !== ta.defaultValue));
  for (const r of tr.querySelectorAll("input[type=radio]"))
    r.addEventListener("change", () => tr.classList.toggle("reject", r.checked && r.value === "reject"));
}}
</script>
</body></html>
"""

_ROW = """<tr data-id="{id}">
<td>{n}</td>
<td><audio controls preload="none" src="{audio}"></audio></td>
<td><textarea name="text-{n}" rows="2">{text}</textarea><div class="teacher">teacher: {teacher}</div></td>
<td><label><input type="radio" name="decision-{n}" value="accept" checked> accept</label><br>
<label><input type="radio" name="decision-{n}" value="reject"> reject</label></td>
<td>{score}</td>
</tr>"""


def render_html(items: Sequence[ReviewItem], selection: str) -> str:
    """One static page; every value is HTML-escaped, the ids also JSON-safe."""
    rows = "\n".join(
        _ROW.format(
            id=html.escape(it.id, quote=True),
            n=i,
            audio=html.escape(it.audio, quote=True),
            text=html.escape(it.text),
            teacher=html.escape(it.teacher_text),
            score="" if it.score is None else f"{it.score:.3f}",
        )
        for i, it in enumerate(items, start=1)
    )
    exported = json.dumps({"selection": selection, "items": len(items)}).replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(selection),
        n=len(items),
        selection=html.escape(selection),
        rows=rows,
        exported=exported,
    )


def export_review(
    labels: Sequence[PseudoLabel],
    out_dir: str | Path,
    *,
    k: int | None = None,
    band: tuple[float, float] | None = None,
) -> ReviewExport:
    """Write ``review.tsv`` and ``review.html`` in ``out_dir`` for the selected labels.

    The review load is the audio to listen to, in minutes, per hour of ``labels``.
    """
    from ..jsonl import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select_for_review(labels, k=k, band=band)
    selection = (
        f"the {len(chosen)} least-confident labels"
        if k is not None
        else f"labels with {band[0]:g} <= score < {band[1]:g}"
    )
    items = _items(chosen, out)
    tsv, page = out / "review.tsv", out / "review.html"
    atomic_write_text(tsv, render_tsv(items))
    atomic_write_text(page, render_html(items, selection))
    audio_min = sum(p.duration for p in chosen) / 60
    hours = sum(p.duration for p in labels) / 3600
    return ReviewExport(
        str(tsv),
        str(page),
        len(chosen),
        round(audio_min, 3),
        round(hours, 4),
        round(audio_min / hours, 3) if hours else 0.0,
        selection,
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
    "select_for_review",
]
