"""Review loop: export (TSV + static HTML page) -> edit -> import, with the audit trail checked."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from asr_distill.quality.filter import FilterConfig, filter_labels, read_labels, read_pseudo_labels
from asr_distill.quality.review import (
    REJECT_REASON,
    ReviewEdit,
    apply_review,
    audio_url,
    export_review,
    read_edits,
    select_entries,
)
from asr_distill.quality.stage import ReviewOptions, run_review_export, run_review_import
from asr_distill.testing.review import hand_label as _label

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def filtered(fixture_labels, tmp_path_factory):
    """Real teacher labels through the filter (keep all: review decides), written like the CLI does."""
    from asr_distill.cli import main

    out = tmp_path_factory.mktemp("filtered")
    assert (
        main(
            ["filter", str(fixture_labels), "--out", str(out), "--score", "avg_logprob", "--threshold", "-5"]
        )
        == 0
    )
    return out


def _selected(labels, **how):
    """The labels ``select_entries`` picks, in queue order."""
    return [e.label for e in select_entries(labels, **how)]


def resolve_src(src: str, page_dir: Path) -> Path:
    """Where a browser would look for an <audio src> of a page in ``page_dir``."""
    from urllib.parse import unquote, urlparse

    url = urlparse(src)
    if url.scheme == "file":
        return Path(unquote(url.path))
    return (page_dir / unquote(url.path)).resolve()


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.audio, self.textareas, self.radios, self.buttons, self.scripts = (
            [],
            [],
            [],
            [],
            [],
            [],
        )
        self._in_script = self._in_textarea = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-id" in a:
            self.rows.append(a["data-id"])
        elif tag == "audio":
            self.audio.append(a)
        elif tag == "textarea":
            self._in_textarea = True
            self.textareas.append("")
        elif tag == "input" and a.get("type") == "radio":
            self.radios.append(a)
        elif tag == "button":
            self.buttons.append(a)
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag == "textarea":
            self._in_textarea = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        if self._in_textarea:
            self.textareas[-1] += data


def test_select_least_confident_or_band(filtered):
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    worst = _selected(kept, k=3)
    assert len(worst) == 3 and [p.score for p in worst] == sorted(p.score for p in kept)[:3]
    lo, hi = sorted(p.score for p in kept)[2], 0.0
    band = _selected(kept, band=(lo, hi))
    assert all(lo <= p.score < hi for p in band) and len(band) == 6
    with pytest.raises(ValueError, match="exactly one"):
        _selected(kept)


def test_export_page_has_a_player_editable_text_decisions_and_save(filtered, tmp_path):
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    r = export_review(kept, tmp_path / "review", k=4)
    page = Path(r.html).read_text()
    parser = PageParser()
    parser.feed(page)
    chosen = _selected(kept, k=4)
    assert parser.rows == [p.id for p in chosen]
    assert len(parser.audio) == 4 and all("controls" in a for a in parser.audio)
    for a, p in zip(parser.audio, chosen, strict=True):  # each player points at the label's audio
        assert resolve_src(a["src"], Path(r.html).parent) == Path(p.audio_filepath).resolve()
    assert parser.textareas == [p.text for p in chosen]
    assert {x["value"] for x in parser.radios} == {"accept", "reject"} and len(parser.radios) == 8
    assert any(b.get("id") == "save" for b in parser.buttons)
    js = parser.scripts[0]
    assert "new Blob(" in js and "review_edits.json" in js and "createObjectURL" in js
    # review load: minutes of audio per hour labeled
    hours = sum(p.duration for p in kept) / 3600
    assert r.load_min_per_h == pytest.approx(sum(p.duration for p in chosen) / 60 / hours, rel=1e-3)
    rows = list(csv.DictReader(io.StringIO(Path(r.tsv).read_text()), delimiter="\t"))
    assert [x["id"] for x in rows] == parser.rows and all(x["decision"] == "accept" for x in rows)


def test_audio_url_for_a_segment_uses_a_media_fragment(tmp_path):
    audio = tmp_path / "calls" / "long.wav"
    url = audio_url(str(audio), tmp_path / "review", offset=12.5, duration=4.0)
    assert url == "../calls/long.wav#t=12.500,16.500"
    assert audio_url(str(audio), tmp_path / "review", 0.0, 4.0) == "../calls/long.wav"
    assert audio_url("/elsewhere/a b.wav", Path("/tmp/x"), 0.0, 1.0) == "file:///elsewhere/a%20b.wav"
    assert audio_url(str(tmp_path / "a b.wav"), tmp_path / "review", 0.0, 1.0) == "../a%20b.wav"


def test_round_trip_export_edit_import_with_audit(filtered, tmp_path, capsys):
    """Export, edit as the page's save button would, import through the CLI, check the audit."""
    from asr_distill.cli import main

    assert (
        main(["review", "export", str(filtered / "kept.jsonl"), "--out", str(tmp_path / "rev"), "--k", "3"])
        == 0
    )
    rows = list(csv.DictReader(io.StringIO((tmp_path / "rev" / "review.tsv").read_text()), delimiter="\t"))
    edit_id, reject_id, accept_id = (x["id"] for x in rows)
    old_text = rows[0]["text"]
    # what saveEdits() downloads
    payload = {
        "reviewer": "ada",
        "time": "2026-11-26T12:00:00Z",
        "exported": {"items": 3},
        "edits": [
            {"id": edit_id, "decision": "accept", "text": "enter nine one six nine please"},
            {"id": reject_id, "decision": "reject", "text": rows[1]["text"]},
            {"id": accept_id, "decision": "accept", "text": rows[2]["text"]},
        ],
    }
    edits = tmp_path / "review_edits.json"
    edits.write_text(json.dumps(payload))
    before_kept = read_pseudo_labels(filtered / "kept.jsonl")
    before_dropped = read_pseudo_labels(filtered / "dropped.jsonl")
    out = tmp_path / "reviewed"
    assert main(["review", "import", str(filtered / "kept.jsonl"), str(edits), "--out", str(out)]) == 0
    assert "rejected 1" in capsys.readouterr().out
    kept = {p.id: p for p in read_pseudo_labels(out / "kept.jsonl")}
    dropped = {p.id: p for p in read_pseudo_labels(out / "dropped.jsonl")}
    assert len(kept) == len(before_kept) - 1 and len(dropped) == len(before_dropped) + 1
    e = kept[edit_id]
    assert e.text == "enter nine one six nine please"
    assert e.corrections[-1].rule == "review" and e.corrections[-1].old == old_text
    assert e.teacher_text == next(p.teacher_text for p in before_kept if p.id == edit_id)  # never lost
    assert e.review[-1].reviewer == "ada" and e.review[-1].time == "2026-11-26T12:00:00Z"
    assert (e.review[-1].old, e.review[-1].new) == (old_text, "enter nine one six nine please")
    assert (
        dropped[reject_id].drop_reasons == (REJECT_REASON,)
        and dropped[reject_id].review[-1].decision == "reject"
    )
    assert kept[accept_id].review[-1].decision == "accept" and kept[accept_id].text == rows[2]["text"]
    audit = [json.loads(x) for x in (out / "review_audit.jsonl").read_text().splitlines()]
    assert sorted((a["id"], a["decision"], a["reviewer"], a["time"]) for a in audit) == sorted(
        [
            (edit_id, "accept", "ada", payload["time"]),
            (reject_id, "reject", "ada", payload["time"]),
            (accept_id, "accept", "ada", payload["time"]),
        ]
    )
    assert next(a for a in audit if a["id"] == edit_id)["old"] == old_text
    untouched = [p for p in before_kept if p.id not in (edit_id, reject_id, accept_id)]
    assert all(kept[p.id] == p for p in untouched)


def test_import_from_an_edited_tsv_needs_a_reviewer(filtered, tmp_path):
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    r = export_review(kept, tmp_path / "rev", k=2)
    tsv = Path(r.tsv)
    rows = list(csv.DictReader(io.StringIO(tsv.read_text()), delimiter="\t"))
    rows[1]["decision"] = "reject"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    tsv.write_text(buf.getvalue())
    edits, reviewer, time = read_edits(tsv)
    assert reviewer is None and [e.decision for e in edits] == ["accept", "reject"]
    res = apply_review(kept, [], edits, reviewer="bo")
    assert (res.accepted, res.edited, res.rejected) == (1, 0, 1)
    assert res.audit[1]["reviewer"] == "bo" and res.audit[1]["time"]


def test_bad_edits_are_refused_with_the_row(tmp_path):
    p = tmp_path / "e.json"
    p.write_text(json.dumps({"reviewer": "x", "edits": [{"id": "a", "decision": "maybe", "text": ""}]}))
    with pytest.raises(ValueError, match="maybe"):
        read_edits(p)
    p.write_text(json.dumps({"reviewer": "x"}))
    with pytest.raises(ValueError, match="edits"):
        read_edits(p)


def test_edits_for_unknown_ids_are_reported(filtered):
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    res = apply_review(kept, [], [ReviewEdit("nope", "reject", "")], reviewer="x")
    assert res.unknown_ids == ("nope",) and len(res.kept) == len(kept)


def test_review_page_in_headless_chromium(filtered, tmp_path):
    """Where Debian's chromium exists: the page loads, the script builds the edits it would save."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} not installed; the page is parsed and checked by the other tests")
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    r = export_review(kept, tmp_path / "rev", k=2)
    page = Path(r.html)
    page.write_text(
        page.read_text().replace(
            "</body>", "<script>document.title = JSON.stringify(rowEdits());</script></body>"
        )
    )
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "&quot;decision&quot;:&quot;accept&quot;" in dom or '"decision":"accept"' in dom


def test_filtered_labels_survive_review_round_trip_unchanged_when_all_accepted(fixture_labels):
    labels = read_labels(fixture_labels)
    res = filter_labels(labels, config=FilterConfig(score="avg_logprob", threshold=-5))
    edits = [ReviewEdit(p.id, "accept", p.text) for p in res.kept]
    out = apply_review(res.kept, res.dropped, edits, reviewer="x", time="t")
    assert [dataclasses.replace(p, review=()) for p in out.kept] == list(res.kept)
    assert out.edited == 0 and all(len(p.review) == 1 for p in out.kept)


def test_review_options_take_one_selection():
    with pytest.raises(ValueError, match="only one of k, band"):
        ReviewOptions(k=3, band=(-1.0, 0.0))


def test_review_stage_export_then_import_needs_a_reviewer(filtered, tmp_path):
    r = run_review_export(filtered / "kept.jsonl", tmp_path / "rev", ReviewOptions())
    n = len(read_pseudo_labels(filtered / "kept.jsonl"))
    assert r.items == -(-n // 10)  # 10 % of the kept labels by default
    report = json.loads((tmp_path / "rev" / "review_report.json").read_text())
    assert report["items"] == r.items and report["kept"] == str(filtered / "kept.jsonl")
    kept, edits, out = filtered / "kept.jsonl", Path(r.tsv), tmp_path / "out"
    with pytest.raises(ValueError, match="reviewer"):
        run_review_import(kept, edits, out, ReviewOptions())
    res = run_review_import(kept, edits, out, ReviewOptions(reviewer="bo"))
    assert (res.reviewer, res.edits, res.accepted) == ("bo", r.items, r.items)
    dropped = read_pseudo_labels(tmp_path / "out" / "dropped.jsonl")
    assert len(dropped) == len(read_pseudo_labels(filtered / "dropped.jsonl"))  # carried over
    assert len((tmp_path / "out" / "review_audit.jsonl").read_text().splitlines()) == r.items


# --- review by the word: doubtful spans, the queue, the page, the simulated reviewer ----------


@pytest.fixture(scope="module")
def timed_labels(tmp_path_factory, an4_fixture, tiny_teacher):
    """The AN4 fixture clips labeled with word timings, one disagreeing opinion each (see testing.review)."""
    from asr_distill.testing.review import doubtful_labels, timed_label_file

    path = timed_label_file(an4_fixture, tmp_path_factory.mktemp("timed") / "labels.jsonl", tiny_teacher)
    return doubtful_labels(path)


def test_written_timings_match_by_characters_or_give_up():
    from asr_distill.quality.review_queue import written_timings
    from asr_distill.records import WordTiming

    whisper_style = [WordTiming(" GMEF", 0.5, 1.5, 0.9), WordTiming(" 39.", 1.6, 2.0, 0.8)]
    assert written_timings("GMEF 39.", whisper_style) == [(0.5, 1.5), (1.6, 2.0)]
    split_word = [
        WordTiming("GM", 0.5, 1.0, 0.9),
        WordTiming("EF", 1.0, 1.5, 0.9),
        WordTiming("39.", 1.6, 2.0, 1),
    ]
    assert written_timings("GMEF 39.", split_word) == [(0.5, 1.5), (1.6, 2.0)]
    assert written_timings("GMEF 39.", []) == [None, None]
    assert written_timings("GMEF 38.", whisper_style) == [None, None]  # other text: no wrong spans


def test_doubtful_words_spans_and_listening():
    from asr_distill.quality.review_queue import PAD, Pad, queue_entry

    timings = [(" enter", 0.2, 0.6), (" five", 0.7, 1.1), (" six", 1.2, 1.5), (" please", 2.6, 3.9)]
    p = _label("enter five six please", "enter nine six please", [0.9, 0.1, 0.3, 0.95], timings)
    e = queue_entry(p)
    assert [w.doubtful for w in e.words] == [False, True, True, False]
    assert e.runs == ((1, 2),) and e.expected_errors == pytest.approx(0.9 + 0.7)
    before, after = PAD
    assert e.listen == ((0.7 - before, 1.5 + after),) and e.listen_s == pytest.approx(0.8 + before + after)
    wide = queue_entry(p, pad=Pad(0.25, 0.5))  # each side its own pad
    assert wide.listen[0] == pytest.approx((0.45, 2.0)) and wide.listen_s == pytest.approx(1.55)
    untimed = queue_entry(_label("enter five six please", "x", [0.9, 0.1, 0.3, 0.95]))
    assert untimed.runs == ((1, 2),) and untimed.listen == ((0.0, 4.0),)  # no timings: the whole clip
    two = queue_entry(_label("enter five six please", "x", [0.1, 0.9, 0.9, 0.2], timings), pad=Pad(0.3, 0.3))
    assert np.allclose(two.listen, ((0.0, 0.9), (2.3, 4.0)))  # padded, clipped to the clip
    whole = queue_entry(p, "utterance")
    assert whole.listen == ((0.0, 4.0),) and whole.expected_errors == pytest.approx(0.1 + 0.9 + 0.7 + 0.05)
    with pytest.raises(ValueError, match="unit"):
        queue_entry(p, "sentence")


@pytest.mark.parametrize(
    "text, pad",
    [("0.3", (0.3, 0.3)), ("0:0.3", (0.0, 0.3)), ("0.05:1", (0.05, 1.0)), ("2", (2.0, 2.0))],
)
def test_a_pad_reads_as_seconds_or_before_after(text, pad):
    from asr_distill.quality.review_queue import Pad

    assert Pad.parse(text) == pad and Pad.parse(str(Pad.parse(text))) == pad


@pytest.mark.parametrize("text", ["", "a", "0.3:", "-0.1", "0:0.3:1", "nan", "inf:0"])
def test_a_bad_pad_is_refused_by_name(text):
    from asr_distill.quality.review_queue import Pad

    with pytest.raises(ValueError, match="BEFORE:AFTER"):
        Pad.parse(text)


def test_highlights_follow_a_corrected_text():
    """Confidences belong to the teacher's words; a corrected text gets them through an alignment."""
    from asr_distill.quality.review_queue import label_words

    p = _label(
        "enter GMEF 39", "x", [0.9, 0.9, 0.9, 0.2, 0.1, 0.9, 0.9], label_text="enter g m e f thirty nine"
    )
    words = label_words(p)
    assert [w.text for w in words if w.doubtful] == ["e", "f"]
    assert words[-1].doubtful is False and words[-1].confidence == 0.9


def test_queue_ranks_by_expected_errors_per_second_heard():
    from asr_distill.quality.review_queue import review_queue

    dense = _label("a b c", "x", [0.1, 0.9, 0.9], [(" a", 0, 0.4), (" b", 0.5, 1), (" c", 1, 2)], id="dense")
    long = _label("a b c", "x", [0.1, 0.9, 0.9], id="long", duration=8.0)  # the same doubt, 8 s to hear
    sure = _label("a b c", "x", [0.9, 0.9, 0.9], id="sure", score=-2.0)
    unknown = _label("a b c", "x", [], id="unknown", score=-1.0)
    assert [e.label.id for e in review_queue([sure, unknown, long, dense])] == [
        "dense",
        "long",
        "unknown",
        "sure",
    ]
    by_score = review_queue([sure, unknown, long, dense], "utterance")
    assert [e.label.id for e in by_score] == ["sure", "unknown", "long", "dense"]  # ties keep their order


def test_select_by_listening_budget():
    from asr_distill.quality.review import select_entries

    labels = [_label("a b", "x", [0.1, 0.9], id=f"u{i}", duration=2.0 + i) for i in range(4)]
    chosen = select_entries(labels, minutes=7.5 / 60)  # 2 s + 3 s fit, 4 s more does not
    assert [e.label.id for e in chosen] == ["u0", "u1"]
    with pytest.raises(ValueError, match="exactly one"):
        select_entries(labels, k=1, minutes=1.0)
    with pytest.raises(ValueError, match="only one of k, band, minutes"):
        ReviewOptions(k=1, minutes=1.0)
    with pytest.raises(ValueError, match="unit"):
        ReviewOptions(unit="sentence")


def test_cli_units_and_pad_are_the_queues():
    from asr_distill.commands import review
    from asr_distill.quality import review_queue

    assert review.UNITS == review_queue.UNITS
    assert review.PAD == str(review_queue.PAD)


def test_review_export_pad_sets_what_the_page_plays(timed_labels, tmp_path, capsys):
    """``--pad`` widens every played span by what it adds; the report names it; a bad pad is refused."""
    from asr_distill.cli import main
    from asr_distill.jsonl import atomic_write_jsonl
    from asr_distill.quality.review_queue import PAD

    kept = tmp_path / "kept.jsonl"
    atomic_write_jsonl(kept, timed_labels)
    runs = {}
    for name, extra in (("default", []), ("wide", ["--pad", "0.5:1"])):
        out = tmp_path / name
        assert main(["review", "export", str(kept), "--out", str(out), "--k", "4", *extra]) == 0
        report = json.loads((out / "review_report.json").read_text())
        runs[name] = (report, (out / "review.html").read_text())
    assert runs["default"][0]["pad_s"] == PAD._asdict()
    assert runs["wide"][0]["pad_s"] == {"before": 0.5, "after": 1.0}
    assert runs["wide"][0]["listen_min"] > runs["default"][0]["listen_min"]
    spans = {}  # (label id, run) -> the stretch played; the pad also moves labels in the queue's order
    for name, (_, page) in runs.items():
        parser = MarkParser()
        parser.feed(page)
        spans[name] = {
            (row["data-id"], *r[:2]): tuple(r[2:])
            for row in parser.row_attrs
            for r in json.loads(row["data-runs"])
        }
    both = spans["default"].keys() & spans["wide"].keys()
    assert both, "no run on both pages"
    for run in both:
        (a, b), (wa, wb) = spans["default"][run], spans["wide"][run]
        assert wa == pytest.approx(max(0.0, a - 0.5 + PAD.before), abs=2e-3) and wb >= b
        assert wb - wa > b - a
    capsys.readouterr()
    bad = ["review", "export", str(kept), "--out", str(tmp_path / "bad"), "--k", "4", "--pad", "-1"]
    assert main(bad) == 2 and "BEFORE:AFTER" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the folder is made


def test_review_export_calibrates_word_confidence_on_transcribed_labels(timed_labels, tmp_path, capsys):
    """``--calibrate-on`` ranks by confidences refitted on transcribed labels, saved with the page."""
    from asr_distill.cli import main
    from asr_distill.jsonl import atomic_write_jsonl
    from asr_distill.quality.word_calibration import WordCalibration

    kept = tmp_path / "kept.jsonl"
    atomic_write_jsonl(kept, timed_labels)
    out = tmp_path / "calibrated"
    assert (
        main(["review", "export", str(kept), "--out", str(out), "--k", "4", "--calibrate-on", str(kept)]) == 0
    )
    report = json.loads((out / "review_report.json").read_text())
    known = sum(c is not None for p in timed_labels for c in p.word_confidence)
    assert report["word_calibration"] == {
        "fitted_on": str(kept),
        "words": known,
        "wrong": report["word_calibration"]["wrong"],
    }
    cal = WordCalibration.load(out / "word_calibration.json")
    assert 0 < cal.wrong < known
    # the page is the one the calibrated confidences give
    by_hand = tmp_path / "by_hand.jsonl"
    atomic_write_jsonl(by_hand, cal.apply(timed_labels))
    assert main(["review", "export", str(by_hand), "--out", str(tmp_path / "plain"), "--k", "4"]) == 0
    assert (out / "review.tsv").read_text() == (tmp_path / "plain" / "review.tsv").read_text()
    # the page shows each word's confidence: the fitted one
    assert (out / "review.html").read_text() == (tmp_path / "plain" / "review.html").read_text()
    # the saved fit is reused as it is
    again = ["--calibrate-on", str(out / "word_calibration.json")]
    assert main(["review", "export", str(kept), "--out", str(tmp_path / "again"), "--k", "4", *again]) == 0
    assert (tmp_path / "again" / "review.tsv").read_text() == (out / "review.tsv").read_text()
    # labels without transcripts cannot fit it: refused with the file named
    unheard = tmp_path / "unheard.jsonl"
    atomic_write_jsonl(unheard, [dataclasses.replace(p, ref_text=None) for p in timed_labels])
    capsys.readouterr()
    bad = ["review", "export", str(kept), "--out", str(tmp_path / "bad"), "--calibrate-on", str(unheard)]
    assert main(bad) == 2
    assert f"calibrate_on {unheard}" in capsys.readouterr().err


def test_page_highlights_exactly_the_doubtful_words_and_plays_their_spans(timed_labels, tmp_path):
    from asr_distill.quality.review import select_entries
    from asr_distill.testing.review import ODD_WORD

    assert all(p.words for p in timed_labels), "word timings expected on every label"
    r = export_review(timed_labels, tmp_path / "rev", k=4)
    page = Path(r.html).read_text()
    parser = MarkParser()
    parser.feed(page)
    chosen = select_entries(timed_labels, k=4)
    assert parser.rows == [e.label.id for e in chosen]
    for row, e in zip(parser.row_attrs, chosen, strict=True):
        doubtful = [w.text for w in e.words if w.doubtful]
        assert parser.marks[row["data-id"]] == doubtful and doubtful  # the opinion's odd word at least
        assert doubtful[-1] == e.label.text.split()[-1] and ODD_WORD not in e.label.text
        runs = json.loads(row["data-runs"])
        assert [tuple(x[:2]) for x in runs] == list(e.runs)
        for first, last, start, end in runs:  # a run plays its words' span, padded, inside the clip
            words = e.words[first : last + 1]
            assert 0 <= start <= min(w.start for w in words) and max(w.end for w in words) <= end
            assert end <= e.label.duration + 1e-3 and end - start < e.label.duration or start == 0
    assert r.doubtful_words == sum(len(v) for v in parser.marks.values())
    assert r.listen_min <= r.audio_min
    rows = list(csv.DictReader(io.StringIO(Path(r.tsv).read_text()), delimiter="\t"))
    assert [x["doubtful"].split()[-1] for x in rows] == [e.label.text.split()[-1] for e in chosen]


def test_page_without_timings_plays_the_whole_clip(timed_labels, tmp_path):
    untimed = [dataclasses.replace(p, words=()) for p in timed_labels]
    r = export_review(untimed, tmp_path / "rev", k=3)
    parser = MarkParser()
    parser.feed(Path(r.html).read_text())
    for row in parser.row_attrs:
        runs = json.loads(row["data-runs"])
        assert runs and all(x[2:] == [0.0, round(float(row["data-duration"]), 3)] for x in runs)
        assert parser.marks[row["data-id"]]  # still highlighted
    assert r.listen_min == pytest.approx(r.audio_min, abs=1e-3)


class MarkParser(PageParser):
    """The page's rows (with their attributes) and the highlighted words of each."""

    def __init__(self):
        super().__init__()
        self.row_attrs, self.marks, self._mark = [], {}, False

    def handle_starttag(self, tag, attrs):
        super().handle_starttag(tag, attrs)
        a = dict(attrs)
        if tag == "tr" and "data-id" in a:
            self.row_attrs.append(a)
            self.marks[a["data-id"]] = []
        self._mark = tag == "mark" and "doubt" in a.get("class", "") and "data-run" in a
        if self._mark:
            self.marks[self.rows[-1]].append("")

    def handle_endtag(self, tag):
        super().handle_endtag(tag)
        self._mark = self._mark and tag != "mark"

    def handle_data(self, data):
        super().handle_data(data)
        if self._mark:
            self.marks[self.rows[-1]][-1] += data


def test_simulated_reviewer_fixes_only_highlighted_words():
    from asr_distill.quality.review_queue import Pad
    from asr_distill.quality.review_sim import simulate

    timings = [(" enter", 0.2, 0.6), (" five", 0.7, 1.1), (" six", 1.2, 1.5), (" please", 2.6, 3.9)]
    # "five" is wrong and doubtful; "now" is missing far from any highlight
    p = _label("enter five six please", "enter nine six now please", [0.9, 0.1, 0.9, 0.95], timings)
    word = simulate([p], "word", 1.0, pad=Pad(0.5, 0.5))
    assert (word.errors_before, word.errors_removed, word.items) == (2, 1, 1)
    assert word.listened_min == pytest.approx((0.4 + 1.0) / 60, abs=1e-4)
    whole = simulate([p], "utterance", 1.0)
    assert (whole.errors_removed, whole.listened_min) == (2, round(4.0 / 60, 4))
    assert (word.changeable, whole.changeable) == (1, 4)  # "five" alone; every word of the clip
    assert word.removed_per_min == pytest.approx(1 / (1.4 / 60), rel=1e-2)
    assert whole.removed_per_min == pytest.approx(2 / (4 / 60), rel=1e-2)
    assert simulate([p], "word", 0.01, pad=Pad(0.5, 0.5)).items == 0  # 1.4 s does not fit in 0.6 s
    with pytest.raises(ValueError, match="ref_text"):
        simulate([_label("a", None, [0.1])], "word", 1.0)


@pytest.mark.parametrize(
    ("text", "ref", "confidences", "fixed"),
    [
        ("enter five six", "enter nine six", [0.9, 0.1, 0.9], "enter 9 6"),  # a highlighted substitution
        ("enter five six", "enter nine six", [0.9, 0.9, 0.9], "enter 5 6"),  # not highlighted: stays
        ("enter the six", "enter six", [0.9, 0.1, 0.9], "enter 6"),  # a highlighted extra word is deleted
        ("enter six", "enter five six", [0.1, 0.9], "enter 5 6"),  # a missing word beside a highlight
        ("enter six please", "enter six now please", [0.1, 0.9, 0.9], "enter 6 please"),  # far from it
    ],
)
def test_fix_highlighted(text, ref, confidences, fixed):
    from asr_distill.normalise import get_normaliser
    from asr_distill.quality.review_queue import queue_entry
    from asr_distill.quality.review_sim import fix_highlighted

    norm = get_normaliser("format_insensitive")
    e = queue_entry(_label(text, ref, confidences))
    assert " ".join(fix_highlighted(e, norm(ref).split())) == norm(fixed)


def test_confidence_table_counts_wrong_words_by_confidence_and_what_the_queue_reaches():
    from asr_distill.quality.review_sim import confidence_table

    labels = [
        # "five" is wrong and doubtful, "now" is missing; "enter" and "six" are right
        _label("enter five six", "enter nine six now", [0.92, 0.1, 0.97], id="a"),
        # "please" is wrong but confident: the queue cannot reach it
        _label("stop please", "stop there", [0.85, 0.93], id="b"),
        # a correction: its words keep the teacher words' confidences; the word it added has none
        _label("go north", "go north", [0.9, 0.95], id="c", label_text="go to north"),
    ]
    t = confidence_table(labels, edges=(0.0, 0.5, 0.9))
    assert [(r["from"], r["words"], r["wrong"]) for r in t["bins"]] == [(0.0, 1, 1), (0.5, 1, 0), (0.9, 5, 1)]
    assert [r["error_rate"] for r in t["bins"]] == [1.0, 0.0, 0.2]
    assert (t["errors"], t["wrong_flagged"], t["wrong_unflagged"]) == (4, 1, 1)
    assert (t["wrong_without_confidence"], t["missing"]) == (1, 1)
    with pytest.raises(ValueError, match="ref_text"):
        confidence_table([_label("a", None, [0.1])])


def test_simulation_on_real_labels_word_mode_hears_less(timed_labels):
    """Real labels with real word timings: word review hears less than whole clips, and fixes less.

    Only the made-up opinion's word is doubtful, so it cannot remove more errors than there are.
    """
    from asr_distill.quality.review_sim import simulate

    word, whole = simulate(timed_labels, "word", 10), simulate(timed_labels, "utterance", 10)
    assert whole.items == len(timed_labels) and whole.wer_after == 0.0
    assert 0 < word.listened_min < whole.listened_min
    assert 0 <= word.errors_removed <= whole.errors_removed == whole.errors_before
