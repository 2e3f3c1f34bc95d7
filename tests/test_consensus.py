"""Consensus of N decodings: word alignment, votes, word confidences, the consensus_* scores, --second xN."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from asr_distill.quality.confidence import SCORES, available_scores, first_opinion, opinions_of, score_labels
from asr_distill.quality.consensus import (
    AGREEMENT_WEIGHT,
    Consensus,
    align_words,
    consensus,
    spoken_words,
    word_confidences,
    word_probabilities,
)
from asr_distill.quality.filter import filter_labels, read_labels
from asr_distill.quality.stage import FilterOptions, read_second_opinions, run_filter
from asr_distill.records import TokenScore
from asr_distill.testing.labels import make_label, write_labels

CONSENSUS_SCORES = ("consensus_agreement", "consensus_min_word", "consensus_sure_share")


@pytest.mark.parametrize(
    "ref, hyp, heard, inserted",
    [
        ("a b c", "a b c", ("a", "b", "c"), ((), (), (), ())),
        ("a b c", "a x c", ("a", "x", "c"), ((), (), (), ())),  # substitution
        ("a b c", "a c", ("a", "", "c"), ((), (), (), ())),  # deletion
        ("a b c", "a b c d", ("a", "b", "c"), ((), (), (), ("d",))),  # insertion at the end
        ("a b c", "z a b c", ("a", "b", "c"), (("z",), (), (), ())),  # insertion at the start
        ("a b", "", ("", ""), ((), (), ())),  # empty hypothesis
        ("", "a b", (), (("a", "b"),)),  # empty reference
        ("a b c d", "a x c d e", ("a", "x", "c", "d"), ((), (), (), (), ("e",))),  # two at once
    ],
)
def test_align_words(ref, hyp, heard, inserted):
    assert align_words(ref.split(), hyp.split()) == (heard, inserted)


@pytest.mark.parametrize(
    "ref, hyp", [("a b", "x y z"), ("a b c", "x a y"), ("a", "b c d e"), ("a b c d", "d")]
)
def test_align_words_places_every_hypothesis_word_once_in_order(ref, hyp):
    """Where the alignment is not unique, it still accounts for every word, in order."""
    heard, inserted = align_words(ref.split(), hyp.split())
    order = [w for gap, ins in enumerate(inserted) for w in (*ins, *heard[gap : gap + 1]) if w]
    assert order == hyp.split() and len(heard) == len(ref.split())


# (teacher, opinions, consensus text, opinions agreeing per teacher word)
CASES = [
    # N = 1: the teacher wins every tie, so the consensus is the teacher's text
    ("go left now", ["go right now"], "go left now", (1, 0, 1)),
    ("go left now", ["go now"], "go left now", (1, 0, 1)),
    ("go left", ["go left now"], "go left", (1, 1)),
    ("go left", [""], "go left", (0, 0)),
    # N = 2: two opinions outvote the teacher
    ("go left now", ["go right now", "go right now"], "go right now", (2, 0, 2)),
    ("go left now", ["go now", "go now"], "go now", (2, 0, 2)),  # deletion
    ("go left", ["go left now", "go left now"], "go left now", (2, 2)),  # insertion at the end
    ("left now", ["go left now", "go left now"], "go left now", (2, 2)),  # insertion at the start
    ("go left", ["", ""], "", (0, 0)),  # both heard nothing
    ("go left now", ["go right now", "go up now"], "go left now", (2, 0, 2)),  # split vote: teacher
    ("", ["go", "go"], "go", ()),  # the teacher heard nothing
    ("", ["", ""], "", ()),
    # N = 3
    ("go left now", ["go right now", "go left now", "go up now"], "go left now", (3, 1, 3)),
    ("go left", ["go left now", "go left now", "go left"], "go left", (3, 3)),  # 2 against 2: teacher
    ("stop the bed car", ["stop the red car"] * 3, "stop the red car", (3, 3, 0, 3)),
    # N = 4
    (
        "stop the red car",
        ["stop the red car", "stop a red car", "stop the bed car", "stop the red"],
        "stop the red car",
        (4, 3, 3, 3),
    ),
    (
        "stop the bed car",
        ["stop the red car", "stop the red car", "stop the red car", "stop the bed car"],
        "stop the red car",
        (4, 4, 1, 4),
    ),
    ("stop car", ["stop red car", "stop red car", "stop red car", "stop car"], "stop red car", (4, 4)),
    # format-insensitive: spelled letters and digits agree however they are written
    ("Enter GMEF 39.", ["enter g m e f three nine", "Enter G-M-E-F 3 9"], "enter g m e f 3 9", (2,) * 7),
]


@pytest.mark.parametrize("teacher, opinions, text, agree", CASES)
def test_consensus_of_n_opinions(teacher, opinions, text, agree):
    c = consensus(teacher, opinions)
    assert c.opinions == len(opinions)
    assert c.text == text
    assert tuple(w.agree for w in c.words) == agree
    assert all(len(w.heard) == len(opinions) for w in c.words)
    for w in c.words:  # bare texts have no probabilities: confidence is agreement
        assert w.probability is None and w.confidence == pytest.approx(w.agree / len(opinions))


def test_consensus_agreement_counts_words_and_gaps():
    assert consensus("stop the red car", ["stop the red car"] * 2).agreement == 1.0
    four = consensus(
        "stop the red car", ["stop the red car", "stop a red car", "stop the bed car", "stop the red"]
    )
    assert four.agreement == pytest.approx((4 + 3 + 3 + 3) / 16)
    # a word the teacher missed counts: 2 words agreed by both, 1 gap where both heard "now"
    missed = consensus("go left", ["go left now", "go left now"])
    assert [(i.before, i.heard) for i in missed.insertions] == [(2, ("now", "now"))]
    assert missed.agreement == pytest.approx(2 / 3) and missed.min_confidence == 0.0
    assert missed.doubtful() == () and missed.doubtful_share() == pytest.approx(1 / 3)
    assert consensus("", ["", ""]).agreement == 1.0 and consensus("", ["go", ""]).agreement == 0.5
    assert math.isnan(consensus("go left", []).agreement)


def test_word_confidence_combines_agreement_and_teacher_probability():
    label = make_label("go left now", avg_logprob=-0.5)  # one token per word, each logprob -0.5
    c = consensus(label, ["go right now", "go left now"])
    p = math.exp(-0.5)
    assert [w.probability for w in c.words] == pytest.approx([p, p, p])
    expected = [AGREEMENT_WEIGHT * a + (1 - AGREEMENT_WEIGHT) * p for a in (1.0, 0.5, 1.0)]
    assert [w.confidence for w in c.words] == pytest.approx(expected)
    assert c.doubtful(threshold=0.8) == (1,)
    assert word_confidences(label, ["go right now", "go left now"]) == tuple(w.confidence for w in c.words)
    # no opinions: the teacher's probability alone
    assert [w.confidence for w in consensus(label, []).words] == pytest.approx([p, p, p])


def test_word_probabilities_map_tokens_to_written_words():
    tokens = [TokenScore(" Rub", -1.0, None), TokenScore("out", -0.5, None), TokenScore(" GM", -0.2, None)]
    tokens += [TokenScore("EF", -0.1, None), TokenScore(".", -2.0, None)]
    label = make_label("Rubout GMEF.", tokens=tokens)
    first = (math.exp(-1.0) + math.exp(-0.5)) / 2
    second = (math.exp(-0.2) + math.exp(-0.1) + math.exp(-2.0)) / 3
    assert word_probabilities(label) == pytest.approx((first, second))
    # "GMEF" is four spoken words; each gets its written word's probability
    c = consensus(label, ["rubout g m e f"])
    assert [w.word for w in c.words] == ["rubout", "g", "m", "e", "f"]
    assert [w.written for w in c.words] == ["Rubout", *["GMEF."] * 4]
    assert [w.probability for w in c.words] == pytest.approx([first, *[second] * 4])
    # tokens that do not spell the text give no probabilities
    assert word_probabilities(make_label("go left", tokens=[TokenScore(" go", -0.1, None)])) is None
    assert word_probabilities(make_label("", tokens=[])) is None


def test_spoken_words_keep_their_written_words():
    assert spoken_words("Rub out GMEF39") == (
        ("rubout", "g", "m", "e", "f", "3", "9"),
        ((0, 1),) + ((2, 2),) * 6,
    )
    assert spoken_words("Enter twenty one now")[0] == ("enter", "2", "1", "now")
    assert spoken_words("") == ((), ())


def test_consensus_record_round_trips_and_rejects_a_bad_weight():
    c = consensus(make_label("go left now"), ["go right now", "go left now now"])
    assert Consensus.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="weight"):
        consensus("go", ["go"], weight=1.5)


# ---- the consensus_* scores in the registry ------------------------------------------


def test_consensus_scores_are_registered_and_need_a_second_decoding():
    for name in CONSENSUS_SCORES:
        assert SCORES[name].needs_second and SCORES[name].description
        assert name in available_scores(True) and name not in available_scores(False)
        assert math.isnan(SCORES[name].fn(make_label(), None))
        assert math.isnan(SCORES[name].fn(make_label(), ()))


def test_consensus_scores_with_one_and_with_several_opinions():
    label = make_label("stop the red car", avg_logprob=-0.1)
    a, b, c = (make_label(t) for t in ("stop the red car", "stop a red car", "stop a bed car"))
    one = {n: SCORES[n].fn(label, a) for n in CONSENSUS_SCORES}
    assert one == {n: SCORES[n].fn(label, (a,)) for n in CONSENSUS_SCORES}  # N = 1 either way
    assert one["consensus_agreement"] == 1.0 and one["consensus_sure_share"] == 1.0
    assert one["consensus_min_word"] == pytest.approx(
        AGREEMENT_WEIGHT + (1 - AGREEMENT_WEIGHT) * math.exp(-0.1)
    )
    three = {n: SCORES[n].fn(label, (a, b, c)) for n in CONSENSUS_SCORES}
    assert three["consensus_agreement"] == pytest.approx((3 + 1 + 2 + 3) / 12)
    # "the": 1 of 3 agree -> doubtful; "red": 2 of 3 -> not
    expected_min = AGREEMENT_WEIGHT / 3 + (1 - AGREEMENT_WEIGHT) * math.exp(-0.1)
    assert three["consensus_min_word"] == pytest.approx(expected_min)
    assert three["consensus_sure_share"] == pytest.approx(3 / 4)
    assert score_labels([label], "consensus_agreement", {label.id: (a, b, c)}) == [
        three["consensus_agreement"]
    ]


def test_pairwise_scores_compare_with_the_first_opinion():
    label = make_label("go left now")
    first, other = make_label("go right now"), make_label("go left now")
    assert (opinions_of(None), opinions_of(first), first_opinion((first, other))) == ((), (first,), first)
    for name in ("agreement", "agreement_chars", "agreement_entropy"):
        assert SCORES[name].fn(label, (first, other)) == SCORES[name].fn(label, first)
        assert math.isnan(SCORES[name].fn(label, ()))


def test_consensus_scores_on_real_teacher_labels_are_bounded(fixture_labels):
    labels = read_labels(fixture_labels)
    heard = [dataclasses.replace(lab, text="erase nothing at all") for lab in labels]
    for lab, wrong in zip(labels, heard, strict=True):
        assert word_probabilities(lab) is not None, lab.text  # Whisper's tokens spell its text
        for opinions in ((lab,), (lab, wrong), (wrong, wrong, lab)):
            for name in CONSENSUS_SCORES:
                v = SCORES[name].fn(lab, opinions)
                assert 0.0 <= v <= 1.0, (name, lab.text, v)
        assert SCORES["consensus_agreement"].fn(lab, (lab, lab)) == 1.0


# ---- several second-opinion files through the filter ---------------------------------


def _labels_and_opinions():
    labels = [make_label("enter seven", id=f"g{i}", ref_text="enter seven") for i in range(4)]
    labels.append(make_label("erase seven", id="bad", ref_text="enter seven"))
    a = [dataclasses.replace(lab) for lab in labels]
    b = [dataclasses.replace(lab, text="enter seven") for lab in labels]
    return labels, a, b


def test_filter_takes_several_opinions_per_label():
    labels, a, b = _labels_and_opinions()
    many = filter_labels(labels, second={x.id: (x, y) for x, y in zip(a, b, strict=True)})
    single = filter_labels(labels, second={x.id: x for x in a})
    # the default score and every pairwise score are the first opinion's, as with one file
    assert many.report.score == single.report.score == "agreement_entropy"
    assert [p.id for p in many.kept] == [p.id for p in single.kept]
    bad = next(p for p in (*many.kept, *many.dropped) if p.id == "bad")
    assert bad.scores["agreement"] == 1.0 and bad.scores["consensus_agreement"] == 0.75


def test_run_filter_and_cli_read_several_second_files(tmp_path, caplog):
    from asr_distill.cli import main

    labels, a, b = _labels_and_opinions()
    lpath = write_labels(tmp_path / "labels.jsonl", labels)
    apath = write_labels(tmp_path / "a.jsonl", a)
    bpath = write_labels(tmp_path / "b.jsonl", b[1:])  # g0 has only one other decoding
    with caplog.at_level("WARNING"):
        opinions = read_second_opinions(labels, [apath, bpath])
    assert "1 labels have no second decoding in" in caplog.text and str(bpath) in caplog.text
    assert len(opinions["g0"]) == 1 and len(opinions["g1"]) == 2
    assert read_second_opinions(labels, apath) == {x.id: x for x in a}  # one file: as before
    assert read_second_opinions(labels, None) is None
    r = run_filter(lpath, tmp_path / "f", FilterOptions(), second=[apath, bpath])
    report = json.loads((tmp_path / "f" / "filter_report.json").read_text())
    assert report["second_labels"] == [str(apath), str(bpath)] and report["kept"] == len(r.kept)
    out = tmp_path / "cli"
    assert (
        main(["filter", str(lpath), "--out", str(out), "--second", str(apath), "--second", str(bpath)]) == 0
    )
    assert json.loads((out / "filter_report.json").read_text())["second_labels"] == [str(apath), str(bpath)]
    assert main(["filter", str(lpath), "--out", str(tmp_path / "one"), "--second", str(apath)]) == 0
    assert json.loads((tmp_path / "one" / "filter_report.json").read_text())["second_labels"] == str(apath)


def test_filtered_labels_carry_one_confidence_per_spoken_word():
    labels, a, b = _labels_and_opinions()
    result = filter_labels(labels, second={x.id: (x, y) for x, y in zip(a, b, strict=True)})
    bad = next(p for p in (*result.kept, *result.dropped) if p.id == "bad")
    good = next(p for p in (*result.kept, *result.dropped) if p.id == "g0")
    assert len(bad.word_confidence) == len(good.word_confidence) == 2
    # "erase" has one of two opinions against it; "seven" has both for it
    assert bad.word_confidence[0] < bad.word_confidence[1]
    assert good.word_confidence[0] > bad.word_confidence[0]
    assert filter_labels(labels).kept[0].word_confidence == ()
