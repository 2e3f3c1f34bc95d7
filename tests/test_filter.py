"""Filter rules (one table each), the filter stage on real teacher labels, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from asr_distill.quality.correct import Correction, correct_text
from asr_distill.quality.filter import PseudoLabel, filter_labels, read_labels, read_pseudo_labels
from asr_distill.quality.filter_report import format_filter_report, label_wer
from asr_distill.quality.rules import (
    RULES,
    Candidate,
    FilterConfig,
    rule_char_rate,
    rule_empty,
    rule_hallucination_phrase,
    rule_low_confidence,
    rule_low_unique_words,
    rule_no_speech,
    rule_overlong_word,
    rule_rate_out_of_range,
    rule_repetition_loop,
    rule_teacher_disagreement,
    rule_too_long,
    rule_too_short,
    rule_wrong_language,
)
from asr_distill.quality.stage import FilterOptions, run_filter
from asr_distill.testing.labels import make_label, write_labels

CFG = FilterConfig()


def cand(
    text="enter seven",
    *,
    scores=None,
    corrections=(),
    score_name="avg_logprob",
    threshold=-1.0,
    text_raw=None,
    **label_kw,
) -> Candidate:
    """A rule's input: ``text`` is the corrected label, ``text_raw`` the teacher's (default: the same)."""
    return Candidate(
        make_label(text if text_raw is None else text_raw, **label_kw),
        text,
        tuple(corrections),
        scores or {},
        score_name,
        threshold,
    )


# (rule, candidate, expected keep, a word the reason must contain)
TABLE = [
    (rule_empty, cand(""), False, "no words"),
    (rule_empty, cand("..."), False, "no words"),
    (rule_empty, cand("yes"), True, ""),
    (rule_no_speech, cand(no_speech_prob=0.9, avg_logprob=-1.5), False, "no_speech_prob"),
    (rule_no_speech, cand(no_speech_prob=0.9, avg_logprob=-0.3), True, ""),  # whisper: sure of the words
    (rule_no_speech, cand(no_speech_prob=0.2, avg_logprob=-1.5), True, ""),
    (rule_too_short, cand(duration=0.1), False, "0.10 s"),
    (rule_too_short, cand(duration=0.7), True, ""),
    (rule_too_long, cand(duration=31.0), False, "31.00 s"),
    (rule_too_long, cand(duration=29.0), True, ""),
    (rule_wrong_language, cand(detected_language="de", language_prob=0.9), False, "'de'"),
    (rule_wrong_language, cand(detected_language="el", language_prob=0.57), True, ""),  # unsure
    (rule_wrong_language, cand(detected_language="en"), True, ""),
    (rule_wrong_language, cand(), True, ""),
    (rule_repetition_loop, cand(compression_ratio=3.1), False, "compression ratio"),
    (rule_repetition_loop, cand("go go go go go"), False, "repeated"),
    (
        rule_repetition_loop,
        cand("go", corrections=[Correction("trim_loops", "go go go go go go", "go")]),
        False,
        "loop was",
    ),
    (
        rule_repetition_loop,
        cand(
            "enter seven go",
            corrections=[Correction("trim_loops", "enter seven go go go go", "enter seven go")],
        ),
        True,
        "",
    ),
    (rule_repetition_loop, cand("five five five"), True, ""),
    (rule_repetition_loop, cand("p h i l l l l i p s", text_raw="PHIL L-L-L-I-P-S."), True, ""),
    (rule_hallucination_phrase, cand("enter 7 thanks for watching"), False, "stock phrase"),
    (rule_hallucination_phrase, cand("enter 7 thank you"), True, ""),
    (rule_rate_out_of_range, cand("yes", duration=20.0), False, "words/s <"),
    (rule_rate_out_of_range, cand("G-M-E-F 39 " * 5, duration=2.0), False, "words/s >"),
    (rule_rate_out_of_range, cand("G-M-E-F 39", duration=3.0), True, ""),
    (rule_rate_out_of_range, cand(""), True, ""),  # empty is the empty rule's
    (rule_teacher_disagreement, cand(scores={"agreement_chars": 0.2}), False, "agreement 0.20"),
    (rule_teacher_disagreement, cand(scores={"agreement_chars": 0.75}), True, ""),
    (rule_teacher_disagreement, cand(scores={}), True, ""),  # no second decoding
    (rule_low_confidence, cand(scores={"avg_logprob": -1.3}), False, "avg_logprob -1.300"),
    (rule_low_confidence, cand(scores={"avg_logprob": -0.3}), True, ""),
    (
        rule_low_confidence,
        cand(scores={"agreement": math.nan}, score_name="agreement", threshold=1.0),
        False,
        "undefined",
    ),
    # Granary-style hallucination features (arXiv 2505.13404)
    (rule_low_unique_words, cand("thank you " * 6), False, "2 distinct of 12 words"),
    (rule_low_unique_words, cand("go " * 9), True, ""),  # under 10 words: repetition_loop's
    (rule_low_unique_words, cand("one one one two two two three three three four"), True, ""),  # 0.4
    (rule_low_unique_words, cand("please turn left at the next light and then stop by the door"), True, ""),
    (rule_low_unique_words, cand(""), True, ""),
    (rule_overlong_word, cand("A" + "h" * 40), False, "41-letter word"),
    (rule_overlong_word, cand("antidisestablishmentarianism is long"), True, ""),  # 28 letters
    (rule_overlong_word, cand("www.example-company.com/support"), True, ""),  # letter runs are short
    (rule_overlong_word, cand("F-R-A-N-C-E-S-M-A-R-Y"), True, ""),
    (rule_overlong_word, cand(""), True, ""),
    (rule_char_rate, cand("enter seven", duration=0.2), False, "characters/s"),  # 50 letters/s
    (rule_char_rate, cand("Enter 71544.", duration=0.8), False, "31.2 characters/s"),  # spoken form
    (rule_char_rate, cand("Enter 71544.", duration=3.3), True, ""),
    (rule_char_rate, cand("enter seven", duration=2.0), True, ""),
    (rule_char_rate, cand(""), True, ""),
]


@pytest.mark.parametrize("rule, candidate, keep, reason", TABLE, ids=lambda x: getattr(x, "__name__", None))
def test_rule(rule, candidate, keep, reason):
    v = rule(candidate, CFG)
    assert v.keep is keep
    assert v.rule in RULES and RULES[v.rule] is rule
    if not keep:
        assert reason in v.reason
    else:
        assert v.reason == ""


def test_every_listed_rule_has_a_table_row():
    assert {r.__name__ for r, *_ in TABLE} == {f.__name__ for f in RULES.values()}
    assert set(RULES) >= {
        "empty",
        "no_speech",
        "low_confidence",
        "teacher_disagreement",
        "repetition_loop",
        "rate_out_of_range",
        "wrong_language",
        "hallucination_phrase",
        "too_short",
        "too_long",
        "low_unique_words",
        "overlong_word",
        "char_rate",
    }


def synthetic_set():
    """Eight labels with known faults and a second decoding that agrees on the good ones."""
    good = [make_label("enter seven", id=f"g{i}", ref_text="enter seven") for i in range(4)]
    bad = [
        make_label("", id="empty", ref_text="yes"),
        make_label("enter eleven", id="disagree", ref_text="enter seven"),
        make_label("go go go go go go go", id="loop", ref_text="go", compression_ratio=3.0),
        make_label("enter seven", id="unsure", avg_logprob=-1.4, ref_text="enter seven"),
    ]
    labels = good + bad
    second = {
        lab.id: dataclasses.replace(
            lab,
            text=lab.text or "",
        )
        for lab in labels
    }
    second["disagree"] = dataclasses.replace(second["disagree"], text="erase seventy")
    second["unsure"] = dataclasses.replace(second["unsure"], text="enter eleven")
    return labels, second


def test_filter_labels_drops_each_fault_for_its_reason():
    labels, second = synthetic_set()
    r = filter_labels(labels, second=second)
    assert {p.id for p in r.kept} == {"g0", "g1", "g2", "g3"}
    reasons = {p.id: p.drop_reasons[0] for p in r.dropped}
    assert reasons == {
        "empty": "empty",
        "disagree": "teacher_disagreement",
        "loop": "repetition_loop",
        "unsure": "low_confidence",
    }
    rep = r.report
    assert (rep.utterances, rep.kept, rep.dropped, rep.retention) == (8, 4, 4, 0.5)
    assert sum(c.utterances for c in rep.by_reason.values()) == rep.dropped
    assert rep.by_reason["empty"].hours == pytest.approx(2.0 / 3600, abs=1e-4)
    assert (rep.score, rep.threshold_source, rep.normaliser) == (
        "agreement_entropy",
        "default",
        "spoken_form",
    )
    assert rep.label_wer_kept == 0.0 and rep.label_wer_all > 0


def test_agreement_is_scored_on_the_texts_the_lexicon_corrects():
    """Two misspellings of one domain name agree once corrected; a real disagreement still counts."""
    from asr_distill.quality.correct import CorrectionConfig
    from asr_distill.quality.filter import lexicon_view

    labels = [
        make_label("my glimmerstome lamp broke", id="name", ref_text="my glimmerstone lamp broke"),
        make_label("my glimmerstone lamp broke", id="word", ref_text="my glimmerstone lamp spoke"),
    ]
    second = {
        "name": make_label("my glimerstone lamp broke", id="name"),
        "word": make_label("my glimmerstone lamp spoke", id="word"),
    }
    lexicon = FilterConfig(correction=CorrectionConfig(lexicon=("Glimmerstone",)))
    plain, fixed = filter_labels(labels, second=second), filter_labels(labels, second=second, config=lexicon)
    agreement = {p.id: p.scores["agreement"] for p in (*fixed.kept, *fixed.dropped)}
    before = {p.id: p.scores["agreement"] for p in (*plain.kept, *plain.dropped)}
    assert agreement["name"] == 1.0 and before["name"] < 1.0  # the lexicon settles the name
    assert agreement["word"] == before["word"] < 1.0  # nothing to correct: the same disagreement
    name = next(p for p in (*fixed.kept, *fixed.dropped) if p.id == "name")
    assert [c.new for c in name.corrections if c.rule == "lexicon"] == ["my Glimmerstone lamp broke"]
    same, none = lexicon_view(labels, second, FilterConfig())
    assert same == labels and none == second  # without a lexicon the texts are scored as given


def test_pseudo_label_keeps_teacher_text_corrections_history_and_provenance():
    labels, second = synthetic_set()
    labels[0] = dataclasses.replace(labels[0], text="Enter 7.")
    r = filter_labels(labels, second=second)
    p = next(p for p in r.kept if p.id == "g0")
    assert (p.text, p.teacher_text) == ("enter seven", "Enter 7.")
    assert p.corrections == (Correction("normalise:spoken_form", "Enter 7.", "enter seven"),)
    assert [v.rule for v in p.filter_history] == list(RULES)
    assert p.provenance == labels[0].provenance and p.kept
    again = PseudoLabel.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


@pytest.mark.parametrize(
    "config, source",
    [
        (FilterConfig(score="avg_logprob", threshold=-0.5), "user"),
        (FilterConfig(score="avg_logprob", keep=0.25), "keep"),
        (FilterConfig(score="avg_logprob"), "default"),
        (FilterConfig(target_wer=0.0), "calibration"),
    ],
)
def test_threshold_sources(config, source):
    labels, second = synthetic_set()
    r = filter_labels(labels, second=second, config=config)
    assert r.report.threshold_source == source
    if source == "keep":
        assert r.report.kept >= 2  # at least a quarter of 8
    if source == "calibration":
        assert r.calibration is not None and r.report.label_wer_kept == 0.0


def test_keep_at_least_lowers_a_threshold_that_keeps_too_little_and_only_then():
    labels, second = synthetic_set()
    strict = FilterConfig(score="avg_logprob", threshold=10.0)  # no log-probability reaches 10
    assert filter_labels(labels, second=second, config=strict).report.kept == 0
    floored = filter_labels(labels, second=second, config=dataclasses.replace(strict, keep_at_least=0.5))
    r = floored.report
    assert r.threshold_source == "keep_at_least" and r.threshold_before_floor == 10.0
    assert r.threshold < 10.0 and r.kept >= 4  # half of 8, among those the other rules keep
    assert "--keep-at-least" in r.to_dict()["threshold_note"] and r.rules["keep_at_least"] == 0.5
    # a threshold that already keeps enough is left alone
    loose = FilterConfig(score="avg_logprob", threshold=-100.0, keep_at_least=0.5)
    kept = filter_labels(labels, second=second, config=loose).report
    assert (kept.threshold_source, kept.threshold, kept.threshold_before_floor) == ("user", -100.0, None)


def test_filter_refuses_what_it_cannot_do():
    labels, _ = synthetic_set()
    with pytest.raises(ValueError, match="second decoding"):
        filter_labels(labels, config=FilterConfig(score="agreement"))
    with pytest.raises(ValueError, match="no documented default"):
        filter_labels(labels, config=FilterConfig(score="entropy_renyi_exp_min"))
    with pytest.raises(ValueError, match="only one of"):
        FilterConfig(threshold=0.5, keep=0.5)
    no_refs = [dataclasses.replace(lab, ref_text=None) for lab in labels]
    with pytest.raises(ValueError, match="reference transcripts"):
        filter_labels(no_refs, config=FilterConfig(target_wer=5.0))


def test_hallucination_removed_when_unsure_then_label_filtered_as_empty():
    lab = make_label("Thank you for watching.", id="h", avg_logprob=-0.9)
    text, cs = correct_text(lab.text, math.exp(lab.avg_logprob))
    assert text == "" and cs[0].rule == "hallucination_phrase"
    r = filter_labels([lab], config=FilterConfig(score="avg_logprob"))
    assert r.dropped[0].drop_reasons[0] == "empty"
    assert r.dropped[0].teacher_text == "Thank you for watching."


def test_filter_cli_on_real_teacher_labels(fixture_labels, tmp_path, capsys):
    from asr_distill.cli import main

    labels = read_labels(fixture_labels)
    # The second decoding: the same labels with one utterance heard differently.
    second = tmp_path / "second.jsonl"
    rows = [lab.to_dict() for lab in labels]
    rows[0] = dict(rows[0], text="erase nothing at all")
    second.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "f"
    assert main(["filter", str(fixture_labels), "--out", str(out), "--second", str(second)]) == 0
    printed = capsys.readouterr().out
    assert "kept 7 of 8" in printed and "no references were used" in printed
    kept = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    dropped = read_pseudo_labels(out / "dropped.jsonl")
    assert len(kept) == 7 and [p.id for p in dropped] == [labels[0].id]
    assert dropped[0].drop_reasons[0] == "teacher_disagreement"
    for d in kept:  # NeMo manifest fields, the label in spoken form
        assert {"audio_filepath", "duration", "offset", "text", "teacher_text", "corrections"} <= set(d)
        assert d["text"] == d["text"].lower() and not any(ch.isdigit() for ch in d["text"])
    report = json.loads((out / "filter_report.json").read_text())
    assert report["threshold_source"] == "default" and report["score"] == "agreement_entropy"
    assert "no references were used" in report["threshold_note"] and report["threshold"] == 0.82
    assert report["by_reason"]["teacher_disagreement"]["utterances"] == 1
    assert report["normaliser"] == "spoken_form" and report["wer_normaliser"] == "format_insensitive"
    assert (out / "calibration.json").is_file() and (out / "calibration.png").stat().st_size > 10_000


def test_filter_cli_lists_scores(capsys):
    from asr_distill.cli import main

    assert main(["filter", "x.jsonl", "--out", "y", "--list-scores"]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "needs --second" in out and "entropy_gibbs_exp_mean" in out


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(threshold=0.5, keep=0.5), "only one of threshold, keep, target_wer"),
        (dict(keep=0.5, target_wer=5.0), "only one of"),
        (dict(keep=1.5), "keep"),
        (dict(keep_at_least=0.0), "keep_at_least is a fraction"),
        (dict(keep=0.5, keep_at_least=0.6), "keep or keep_at_least"),
        (dict(target_wer=-1.0), "target_wer"),
        (dict(score="confidence_of_the_moon"), "known scores"),
        (dict(normaliser="shouting"), "shouting"),
        (dict(lexicon_similarity=150.0), "similarity"),
        (dict(review_fraction=1.5), "review_fraction"),
    ],
)
def test_filter_options_refuse_bad_values_naming_the_option(options, match):
    with pytest.raises(ValueError, match=match):
        FilterOptions(**options)


@pytest.mark.parametrize("language, expected", [("en", "en"), ("any", None), (None, None), ("de", "de")])
def test_filter_options_language_any_turns_wrong_language_off(language, expected):
    assert FilterOptions(language=language).filter_config().language == expected


def test_filter_options_defaults_match_the_rules():
    cfg = FilterOptions().filter_config()
    assert cfg == FilterConfig()


def test_run_filter_writes_the_stage_files(tmp_path, caplog):
    labels, second = synthetic_set()
    lpath = write_labels(tmp_path / "labels.jsonl", labels)
    spath = write_labels(tmp_path / "second.jsonl", [s for i, s in second.items() if i != "g3"])
    out = tmp_path / "f"
    with caplog.at_level("WARNING"):
        r = run_filter(lpath, out, FilterOptions(review_fraction=0.5), second=spath)
    assert "1 labels have no second decoding" in caplog.text
    assert [p.id for p in read_pseudo_labels(out / "kept.jsonl")] == [p.id for p in r.kept]
    assert [p.id for p in read_pseudo_labels(out / "dropped.jsonl")] == [p.id for p in r.dropped]
    report = json.loads((out / "filter_report.json").read_text())
    assert report["labels"] == str(lpath) and report["second_labels"] == str(spath)
    assert report["review_fraction"] == 0.5 and report["references"] == 8
    assert report["calibration"] == str(out / "calibration.json") and (out / "calibration.png").is_file()
    text = format_filter_report(report, out)
    assert text.splitlines()[0].startswith(f"kept {r.report.kept} of 8 labels")
    assert "label WER vs references" in text and "50% least confident" in text
    assert text.endswith("filter_report.json, calibration.json, calibration.png")


def test_run_filter_refuses_a_missing_or_empty_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_filter(tmp_path / "nope.jsonl", tmp_path / "f", FilterOptions())
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds no labels"):
        run_filter(tmp_path / "empty.jsonl", tmp_path / "f", FilterOptions())


def test_format_filter_report_without_references_or_drops():
    labels = [make_label(id=f"u{i}") for i in range(3)]
    report = filter_labels(labels, config=FilterConfig(score="avg_logprob", keep=1.0)).report.to_dict()
    lines = format_filter_report(report).splitlines()
    assert lines[0].startswith("kept 3 of 3 labels (100.0%") and "reference-free" in lines[0]
    assert not any(x.startswith(("dropped by reason", "label WER", "wrote")) for x in lines)
    assert lines[-1].startswith("review load:")


def test_label_wer_measures_teacher_and_pseudo_labels_alike():
    labels = [make_label("enter seven", id="a", ref_text="enter seven"), make_label("enter", id="b")]
    labels.append(make_label("enter nine", id="c", ref_text="enter seven"))
    r = label_wer(labels)
    assert (r.wer, r.utterances, r.ref_words) == (25.0, 2, 4)
    pseudo = filter_labels(labels, config=FilterConfig(score="avg_logprob", threshold=-5)).kept
    assert label_wer(pseudo, "format_insensitive").wer == 25.0
    assert label_wer([make_label()]) is None
    # an unlabeled pool's empty transcripts: no reference word, no WER (not inf)
    assert label_wer([make_label("enter", id="d", ref_text=""), make_label("", id="e", ref_text=" ")]) is None


def test_filter_cli_refuses_two_threshold_choices(capsys):
    from asr_distill.cli import main

    assert main(["filter", "x.jsonl", "--out", "y", "--threshold", "0.5", "--keep", "0.5"]) == 2
    assert "only one of threshold, keep" in capsys.readouterr().err
