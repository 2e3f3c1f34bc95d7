"""word_error_rate: counts, the normaliser it names, empty references."""

from __future__ import annotations

import math

import pytest

from asr_distill.metrics import WerResult, word_error_rate


@pytest.mark.parametrize(
    ("refs", "hyps", "wer", "subs", "dels", "ins", "ref_words"),
    [
        (["a b c d"], ["a b x d"], 25.0, 1, 0, 0, 4),  # 1 substitution in 4 words
        (["a b c d"], ["a b c"], 25.0, 0, 1, 0, 4),
        (["a b"], ["a b c d"], 100.0, 0, 0, 2, 2),
        (["a b", "c d"], ["a b", "c d"], 0.0, 0, 0, 0, 4),
        (["a b c d", "e f g h"], ["a b c d", "e x g"], 25.0, 1, 1, 0, 8),  # summed, not averaged
        (["six two five"], ["625."], 0.0, 0, 0, 0, 3),  # format only
        (["six two five"], ["626"], 100 / 3, 1, 0, 0, 3),
    ],
)
def test_counts(refs, hyps, wer, subs, dels, ins, ref_words):
    r = word_error_rate(refs, hyps)
    assert r.wer == pytest.approx(wer)
    assert (r.substitutions, r.deletions, r.insertions, r.ref_words) == (subs, dels, ins, ref_words)
    assert r.utterances == len(refs)


def test_normaliser_name_in_result_and_it_matters():
    refs, hyps = ["rubout g m e f three nine"], ["Rubout, G-M-E-F, 39."]
    fi = word_error_rate(refs, hyps)
    assert fi.normaliser == "format_insensitive"
    assert fi.wer == 0.0 and fi.cer == 0.0
    basic = word_error_rate(refs, hyps, normaliser="whisper_basic")
    assert basic.normaliser == "whisper_basic"
    assert basic.wer > 0


def test_cer():
    r = word_error_rate(["abcd"], ["abxd"], normaliser="whisper_basic")
    assert r.cer == pytest.approx(25.0)
    assert r.wer == pytest.approx(100.0)


def test_empty_reference_counts_hypothesis_as_insertions():
    r = word_error_rate(["a b c d", "", "..."], ["a b c d", "thank you", ""])
    assert r.insertions == 2
    assert r.ref_words == 4
    assert r.wer == pytest.approx(50.0)
    assert r.utterances == 3


def test_only_empty_references():
    assert word_error_rate([""], [""]).wer == 0.0
    assert math.isinf(word_error_rate([""], ["hello"]).wer)
    assert word_error_rate([], []).wer == 0.0


def test_empty_hypothesis_is_all_deletions():
    r = word_error_rate(["a b c"], [""])
    assert (r.deletions, r.wer) == (3, 100.0)


def test_length_mismatch():
    with pytest.raises(ValueError, match="pair up"):
        word_error_rate(["a"], ["a", "b"])


def test_unknown_normaliser():
    with pytest.raises(ValueError, match="known normalisers"):
        word_error_rate(["a"], ["a"], normaliser="nope")


def test_result_is_frozen():
    r = word_error_rate(["a"], ["a"])
    assert isinstance(r, WerResult)
    with pytest.raises(AttributeError):
        r.wer = 1.0
