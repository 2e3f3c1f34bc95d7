"""Granary's hallucination features as filter rules (HALLUCINATION_RULES), one table as in test_filter.py."""

from __future__ import annotations

import math

import pytest

from asr_distill.quality.correct import correct_text
from asr_distill.quality.filter import read_labels
from asr_distill.quality.rules import (
    HALLUCINATION_RULES,
    RULES,
    Candidate,
    FilterConfig,
    apply_rules,
    rule_char_rate,
    rule_low_unique_words,
    rule_overlong_word,
)
from asr_distill.testing.labels import make_label

CFG = FilterConfig()


def cand(text="enter seven", **label_kw) -> Candidate:
    """A rule's input whose corrected text is the teacher's ``text``."""
    return Candidate(make_label(text, **label_kw), text, (), {}, "avg_logprob", -1.0)


# (rule, candidate, expected keep, a word the reason must contain)
TABLE = [
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
    assert v.rule in HALLUCINATION_RULES and HALLUCINATION_RULES[v.rule] is rule
    if not keep:
        assert reason in v.reason and v.value is not None and v.threshold is not None
    else:
        assert v.reason == ""


def test_every_hallucination_rule_has_a_table_row_and_a_name_of_its_own():
    assert {r.__name__ for r, *_ in TABLE} == {f.__name__ for f in HALLUCINATION_RULES.values()}
    assert set(HALLUCINATION_RULES) == {"low_unique_words", "overlong_word", "char_rate"}
    assert not set(HALLUCINATION_RULES) & set(RULES)


@pytest.mark.parametrize(
    "field, candidate",
    [
        ("unique_words_min_ratio", cand("thank you " * 6)),
        ("max_word_chars", cand("A" + "h" * 40)),
        ("max_chars_per_s", cand("enter seven", duration=0.2)),
    ],
)
def test_a_rule_is_off_when_its_threshold_is_none(field, candidate):
    verdicts = apply_rules(candidate, FilterConfig(**{field: None}), HALLUCINATION_RULES.values())
    assert all(v.keep for v in verdicts)
    assert not all(v.keep for v in apply_rules(candidate, CFG, HALLUCINATION_RULES.values()))


def test_defaults_keep_every_real_teacher_label(fixture_labels):
    """Safe to run by default: no label of the committed AN4 clips is dropped (rules.py: the references)."""
    for lab in read_labels(fixture_labels):
        text, corrections = correct_text(lab.text, math.exp(lab.avg_logprob), CFG.correction)
        c = Candidate(lab, text, corrections, {}, "avg_logprob", -math.inf)
        verdicts = apply_rules(c, CFG, HALLUCINATION_RULES.values())
        assert all(v.keep for v in verdicts), (lab.text, [v.reason for v in verdicts if not v.keep])
