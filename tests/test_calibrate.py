"""Calibration on constructed cases whose answer is known by hand."""

from __future__ import annotations

import json
import math

import pytest

from asr_distill.metrics import word_error_rate
from asr_distill.quality.calibrate import (
    calibrate,
    choose_point,
    plot_calibration,
    retention_curve,
    utterance_errors,
    write_calibration,
)

# Ten utterances of two words each. The first six are right, the last four each have one
# wrong word: unfiltered label WER = 4 errors / 20 words = 20 %.
REFS = ["enter seven"] * 10
HYPS = ["enter seven"] * 6 + ["erase seven"] * 4
GOOD = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3]  # ranks the wrong ones last
BAD = list(reversed(GOOD))  # ranks them first
TIES = [1.0] * 6 + [0.5] * 4


def test_utterance_errors_sum_to_corpus_wer():
    errs = utterance_errors(REFS, HYPS)
    assert errs == [(0, 2)] * 6 + [(1, 2)] * 4
    corpus = word_error_rate(REFS, HYPS)
    assert 100 * sum(e for e, _ in errs) / sum(w for _, w in errs) == pytest.approx(corpus.wer)


def test_curve_has_a_point_per_distinct_threshold():
    curve = retention_curve("good", GOOD, utterance_errors(REFS, HYPS))
    assert [p.kept for p in curve.points] == list(range(1, 11))
    assert curve.points[5].wer == 0.0 and curve.points[5].threshold == 0.65
    assert curve.points[-1].wer == pytest.approx(20.0)
    ties = retention_curve("ties", TIES, utterance_errors(REFS, HYPS))
    assert [(p.threshold, p.kept, p.wer) for p in ties.points] == [(1.0, 6, 0.0), (0.5, 10, 20.0)]


def test_unscored_labels_come_last():
    curve = retention_curve("nan", [math.nan, 1.0], [(2, 2), (0, 2)])
    assert [(p.kept, p.wer) for p in curve.points] == [(1, 0.0), (2, 50.0)]


@pytest.mark.parametrize(
    "target_wer, keep, threshold, kept",
    [
        (0.0, None, 0.65, 6),  # the most labels with no error: exactly the six right ones
        (5.0, None, 0.65, 6),  # a 7th label gives 1 error / 14 words = 7.1 %: too much
        (10.0, None, 0.6, 7),  # 8 labels would give 2 / 16 = 12.5 %
        (20.0, None, 0.3, 10),
        (None, 0.5, 0.7, 5),
        (None, 0.55, 0.65, 6),
        (None, 1.0, 0.3, 10),
    ],
)
def test_choose_point_known_answers(target_wer, keep, threshold, kept):
    curve = retention_curve("good", GOOD, utterance_errors(REFS, HYPS))
    p = choose_point(curve, target_wer=target_wer, keep=keep)
    # hand-computed: keeping k labels with the 4 wrong ones last gives WER max(0, k-6)/(2k)
    assert (p.threshold, p.kept) == (threshold, kept)
    if target_wer is not None:
        assert p.kept == max(k for k in range(1, 11) if 100 * max(0, k - 6) / (2 * k) <= target_wer)


def test_unreachable_target_gives_none_and_bad_arguments_fail():
    curve = retention_curve("bad", BAD, utterance_errors(REFS, HYPS))
    assert choose_point(curve, target_wer=10.0) is None  # the first kept label is already wrong
    with pytest.raises(ValueError, match="exactly one"):
        choose_point(curve)
    with pytest.raises(ValueError, match="exactly one"):
        choose_point(curve, target_wer=1.0, keep=0.5)


def test_calibrate_picks_the_score_that_keeps_most_at_the_target(tmp_path):
    cal = calibrate({"bad": BAD, "ties": TIES, "good": GOOD}, REFS, HYPS, target_wer=0.0)
    assert cal.wer_all == pytest.approx(20.0)
    assert cal.chosen.kept == 6 and cal.score in ("good", "ties")
    cal_keep = calibrate({"bad": BAD, "good": GOOD}, REFS, HYPS, keep=0.6)
    assert cal_keep.score == "good" and cal_keep.chosen.wer == 0.0
    fixed = calibrate({"bad": BAD, "good": GOOD}, REFS, HYPS, keep=0.6, score="bad")
    assert fixed.score == "bad" and fixed.chosen.wer == pytest.approx(100 * 4 / 12)
    write_calibration(cal, tmp_path / "c.json", tmp_path / "c.png")
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["score"] == cal.score and len(d["curves"]) == 3 and d["chosen"]["kept"] == 6
    png = (tmp_path / "c.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_retention_is_a_fraction_of_all_labels_when_total_is_given():
    cal = calibrate({"good": GOOD}, REFS, HYPS, keep=0.3, total=20)
    assert cal.chosen.retention == pytest.approx(6 / 20) and cal.chosen.wer == 0.0


def test_calibrate_needs_references_and_known_scores():
    with pytest.raises(ValueError, match="reference transcripts"):
        calibrate({"good": []}, [], [], target_wer=1.0)
    with pytest.raises(ValueError, match="available"):
        calibrate({"good": GOOD}, REFS, HYPS, target_wer=1.0, score="other")


def test_plot_marks_the_chosen_point(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cal = calibrate({"good": GOOD, "bad": BAD}, REFS, HYPS, target_wer=5.0)
    path = plot_calibration(cal, tmp_path / "p.png")
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 500 and img.shape[1] > 900
    red = ((img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)).sum()
    assert red > 50  # the red star of the chosen point is drawn
