"""The review page: one static HTML file that a reviewer works through with the keyboard alone.

Each row shows the label's words with the doubtful ones highlighted, an audio player, the
label in an editable box and accept/reject. Arriving at a row plays its first doubtful run
(padded; the whole clip where there are no word timings); a click on a highlighted word
plays its run. Keys: Enter or ``a`` accepts and moves on, ``r`` rejects, ``e`` edits with
the current doubtful run selected (typing replaces it; Enter keeps the edit and moves on,
Escape leaves the box), ``j``/``k`` next/previous row, Space replays, ``l``/``h`` next/previous
doubtful run, ``w`` plays the whole clip (where a padded run cut a word short), ``s`` saves
the edits as JSON (a Blob download: no server, the page works from a file:// URL or any
static host).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

from .review_queue import LabelWord


@dataclass(frozen=True)
class ReviewItem:
    """One row to review: the label, its confidence and where its audio is for the page.

    ``words`` are the label's written words (with which are doubtful) and ``plays`` the
    ``(first, last, start, end)`` word indices and seconds (from the clip's start) of each
    doubtful run; both empty where the label has no word confidences.
    """

    id: str
    audio: str
    offset: float
    duration: float
    score: float | None
    text: str
    teacher_text: str
    words: tuple[LabelWord, ...] = ()
    plays: tuple[tuple[int, int, float, float], ...] = ()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>asr-distill review: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 6px; vertical-align: top; text-align: left; }}
textarea {{ width: 100%; min-width: 20em; font-size: 1.05em; }}
tr.current {{ outline: 3px solid #36c; }} tr.done {{ opacity: 0.75; }}
tr.reject {{ background: #fde8e8; }} tr.edited {{ background: #fff8e0; }}
.words {{ font-size: 1.2em; margin-bottom: 4px; }}
mark.doubt {{ background: #ffd54f; cursor: pointer; padding: 0 2px; }}
mark.doubt.now {{ background: #ff9800; }}
.teacher, .keys {{ color: #666; font-size: 0.9em; }} kbd {{ border: 1px solid #aaa; padding: 0 3px; }}
</style></head>
<body>
<h1>Review {n} labels</h1>
<p>{selection}. Listen to the <mark class="doubt">highlighted</mark> words, correct the text,
accept or reject; <b>Save edits</b> downloads <code>review_edits.json</code> for
<code>asr-distill review import</code>.</p>
<p class="keys">Keys: <kbd>Enter</kbd>/<kbd>a</kbd> accept and next, <kbd>r</kbd> reject, <kbd>e</kbd> edit
the highlighted words (<kbd>Enter</kbd> done, <kbd>Esc</kbd> leave the box), <kbd>j</kbd>/<kbd>k</kbd>
next/previous, <kbd>Space</kbd> replay, <kbd>l</kbd>/<kbd>h</kbd> next/previous highlight, <kbd>w</kbd> the
whole clip, <kbd>s</kbd> save.
A click on a highlighted word plays it.</p>
<p><label>Reviewer <input id="reviewer" name="reviewer" placeholder="your name"></label>
<button id="save" type="button" onclick="saveEdits()">Save edits</button>
<span id="status" aria-live="polite"></span></p>
<table id="review">
<thead><tr><th>#</th><th>audio</th><th>label (editable)</th><th>decision</th><th>score</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
{script}
</script>
</body></html>
"""

_SCRIPT = """const EXPORTED = %s;
const rows = Array.from(document.querySelectorAll("tr[data-id]"));
let cur = -1, run = 0;
function say(text) { document.getElementById("status").textContent = text; }
function rowEdits() {
  const out = [];
  for (const tr of rows) {
    const choice = tr.querySelector("input[type=radio]:checked");
    out.push({id: tr.dataset.id, decision: choice ? choice.value : "accept",
              text: tr.querySelector("textarea").value});
  }
  return out;
}
function saveEdits() {
  const payload = {
    reviewer: document.getElementById("reviewer").value || "anonymous",
    time: new Date().toISOString(),
    exported: EXPORTED,
    edits: rowEdits()
  };
  const blob = new Blob([JSON.stringify(payload, null, 1)], {type: "application/json"});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "review_edits.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
  say("saved review_edits.json");
  return payload;
}
function runsOf(tr) { return JSON.parse(tr.dataset.runs); }
function play(tr, start, end) {
  const a = tr.querySelector("audio"), off = parseFloat(tr.dataset.offset);
  for (const other of document.querySelectorAll("audio")) if (other !== a) other.pause();
  a.dataset.stop = off + end;
  a.currentTime = off + start;
  const p = a.play();
  if (p) p.catch(() => {});
  say("playing " + start.toFixed(1) + "-" + end.toFixed(1) + " s of row " + (rows.indexOf(tr) + 1));
}
function playRun(i) {
  const tr = rows[cur], runs = runsOf(tr);
  if (!runs.length) return play(tr, 0, parseFloat(tr.dataset.duration));
  run = (i + runs.length) %% runs.length;
  for (const m of tr.querySelectorAll("mark.doubt")) m.classList.toggle("now", m.dataset.run == run);
  play(tr, runs[run][2], runs[run][3]);
}
function go(i, sound) {
  if (i < 0 || i >= rows.length) return;
  if (cur >= 0) rows[cur].classList.remove("current");
  cur = i;
  run = 0;
  rows[cur].classList.add("current");
  rows[cur].focus();
  rows[cur].scrollIntoView({block: "nearest"});
  if (sound) playRun(0);
}
function decide(value) {
  const tr = rows[cur];
  tr.querySelector("input[value=" + value + "]").checked = true;
  tr.classList.toggle("reject", value === "reject");
  tr.classList.add("done");
  if (cur < rows.length - 1) go(cur + 1, true);
  else { tr.focus(); say("every row decided: press s to save"); }
}
function wordRange(text, first, last) {
  const re = /\\S+/g;
  let m, k = 0, start = text.length, end = text.length;
  while ((m = re.exec(text))) {
    if (k === first) start = m.index;
    if (k === last) { end = m.index + m[0].length; break; }
    k++;
  }
  return [start, end];
}
function edit() {
  const tr = rows[cur], ta = tr.querySelector("textarea"), runs = runsOf(tr);
  ta.focus();
  if (!runs.length) return ta.select();
  const [start, end] = wordRange(ta.value, runs[run][0], runs[run][1]);
  ta.setSelectionRange(start, end);
}
const KEYS = {
  "a": () => decide("accept"), "Enter": () => decide("accept"), "r": () => decide("reject"),
  "e": edit, "j": () => go(cur + 1, true), "ArrowDown": () => go(cur + 1, true),
  "k": () => go(cur - 1, true), "ArrowUp": () => go(cur - 1, true), " ": () => playRun(run),
  "l": () => playRun(run + 1), "ArrowRight": () => playRun(run + 1),
  "h": () => playRun(run - 1), "ArrowLeft": () => playRun(run - 1), "s": saveEdits,
  "w": () => play(rows[cur], 0, parseFloat(rows[cur].dataset.duration))
};
document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "s") { ev.preventDefault(); saveEdits(); return; }
  if (t.tagName === "TEXTAREA") {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      cur = rows.indexOf(t.closest("tr"));
      decide("accept");
    } else if (ev.key === "Escape") { ev.preventDefault(); t.closest("tr").focus(); }
    return;
  }
  if (["INPUT", "BUTTON", "AUDIO"].includes(t.tagName) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const act = KEYS[ev.key];
  if (!act) return;
  ev.preventDefault();
  if (cur < 0) go(0, false);
  act();
});
for (const tr of rows) {
  const ta = tr.querySelector("textarea");
  ta.addEventListener("input", () => tr.classList.toggle("edited", ta.value !== ta.defaultValue));
  for (const r of tr.querySelectorAll("input[type=radio]"))
    r.addEventListener("change", () => tr.classList.toggle("reject", r.checked && r.value === "reject"));
  for (const m of tr.querySelectorAll("mark.doubt"))
    m.addEventListener("click", () => { go(rows.indexOf(tr), false); playRun(parseInt(m.dataset.run)); });
  const a = tr.querySelector("audio");
  a.addEventListener("timeupdate", () => {
    if (a.dataset.stop && a.currentTime >= parseFloat(a.dataset.stop)) a.pause();
  });
}
if (rows.length) go(0, false);"""

_ROW = """<tr data-id="{id}" tabindex="0" data-offset="{offset:.3f}" data-duration="{duration:.3f}"
 data-runs="{runs}">
<td>{n}</td>
<td><audio controls preload="none" src="{audio}"></audio></td>
<td><div class="words">{words}</div>
<textarea name="text-{n}" rows="2">{text}</textarea><div class="teacher">teacher: {teacher}</div></td>
<td><label><input type="radio" name="decision-{n}" value="accept" checked> accept</label><br>
<label><input type="radio" name="decision-{n}" value="reject"> reject</label></td>
<td>{score}</td>
</tr>"""


def _words_html(it: ReviewItem) -> str:
    """The label's words, each doubtful one a ``<mark>`` naming its run (a click plays that run)."""
    run_of = {k: r for r, (first, last, _, _) in enumerate(it.plays) for k in range(first, last + 1)}
    out = []
    for k, w in enumerate(it.words):
        word = html.escape(w.text)
        if k in run_of:
            conf = "" if w.confidence is None else f"confidence {w.confidence:.2f}"
            out.append(f'<mark class="doubt" data-run="{run_of[k]}" title="{conf}">{word}</mark>')
        else:
            out.append(f"<span>{word}</span>")
    return " ".join(out) if out else html.escape(it.text)


def render_html(items: Sequence[ReviewItem], selection: str) -> str:
    """One static page; every value is HTML-escaped, the ids also JSON-safe."""
    rows = "\n".join(
        _ROW.format(
            id=html.escape(it.id, quote=True),
            n=i,
            offset=it.offset,
            duration=it.duration,
            runs=html.escape(json.dumps([[a, b, round(s, 3), round(e, 3)] for a, b, s, e in it.plays])),
            audio=html.escape(it.audio, quote=True),
            words=_words_html(it),
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
        script=_SCRIPT % exported,
    )


__all__ = ["ReviewItem", "render_html"]
