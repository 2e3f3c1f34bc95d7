"""Word confidence fitted on transcribed labels: constructed cases whose error rates are known."""

from __future__ import annotations

import json

import pytest

from asr_distill.quality.word_calibration import (
    FEATURES,
    WordCalibration,
    fit_word_calibration,
    word_features,
)
from asr_distill.testing.review import hand_label


def _label(i, text, ref, confidences, probabilities=None):
    words = text.split()
    probabilities = probabilities or [0.9] * len(words)
    timings = [
        (f" {w}", 0.4 * k, 0.4 * k + 0.3, p)
        for k, (w, p) in enumerate(zip(words, probabilities, strict=True))
    ]
    return hand_label(text, ref, confidences, timings, id=f"u{i}", duration=2.0)


def _pool(n=40):
    """Labels "cat sat mat", each with one doubted word (consensus 0.6).

    It is wrong in 3 of 4 labels where the teacher's probability is low (0.3), and in 1 of 4
    where it is high (0.95).
    """
    out = []
    for i in range(n):
        low = i % 2 == 0
        wrong = (i % 8 < 6) if low else (i % 8 == 7)
        ref = "cat hat mat" if wrong else "cat sat mat"
        prob = 0.3 if low else 0.95
        out.append(_label(i, "cat sat mat", ref, [1.0, 0.6, 1.0], [0.95, prob, 0.95]))
    return out


def test_fitted_confidence_follows_the_error_rate_the_consensus_alone_misses():
    pool = _pool()
    cal = fit_word_calibration(pool)
    assert cal.features == FEATURES and cal.words == 3 * len(pool)
    assert cal.wrong == sum(p.ref_text != p.text for p in pool)
    out = cal.apply(pool)
    low = [p.word_confidence[1] for p, q in zip(out, pool, strict=True) if q.words[1].probability < 0.5]
    high = [p.word_confidence[1] for p, q in zip(out, pool, strict=True) if q.words[1].probability > 0.5]
    # the same consensus 0.6; the teacher's probability tells them apart
    assert max(low) < 0.5 < min(high)
    assert all(p.word_confidence[0] > 0.9 for p in out)  # words never wrong stay sure
    assert [p.text for p in out] == [p.text for p in pool]  # only confidences change


def test_features_one_row_per_known_confidence_and_none_without():
    a = _label(0, "cat sat", "cat sat", [0.9, None])
    b = _label(1, "cat", "cat", [])
    rows = word_features([a, b])
    assert rows[0].shape == (1, len(FEATURES)) and rows[1] is None
    cal = fit_word_calibration(_pool())
    out = cal.apply([a, b])
    assert out[0].word_confidence[1] is None and out[1] is b


def test_saved_calibration_loads_back_and_refuses_other_files(tmp_path):
    cal = fit_word_calibration(_pool())
    path = tmp_path / "word_calibration.json"
    cal.save(path)
    assert WordCalibration.load(path) == cal
    other = json.loads(path.read_text()) | {"features": ["confidence"]}
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="word_calibration.json: fitted on features"):
        WordCalibration.load(path)
    for bad in (
        "not json",
        "[1, 2]",
        json.dumps(json.loads(path.read_text()) | {"features": list(FEATURES)} | {"coef": [1.0]}),
    ):
        path.write_text(bad)
        with pytest.raises(ValueError, match="not a word calibration"):
            WordCalibration.load(path)


def test_fitting_needs_transcripts_with_right_and_wrong_words():
    unheard = [_label(i, "cat sat", None, [0.9, 0.4]) for i in range(5)]
    with pytest.raises(ValueError, match="some words wrong and some right"):
        fit_word_calibration(unheard)
    perfect = [_label(i, "cat sat", "cat sat", [0.9, 0.4]) for i in range(5)]
    with pytest.raises(ValueError, match="some words wrong and some right"):
        fit_word_calibration(perfect)
