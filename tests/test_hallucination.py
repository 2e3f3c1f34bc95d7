"""Granary's hallucination features as filter rules: off by a None threshold, safe on real labels.

Their keep/drop table is the one of every rule, in test_filter.py.
"""

from __future__ import annotations

import math

import pytest

from asr_distill.quality.correct import correct_text
from asr_distill.quality.filter import read_labels
from asr_distill.quality.rules import (
    HALLUCINATION_RULES,
    Candidate,
    FilterConfig,
    apply_rules,
)
from asr_distill.testing.labels import make_label

CFG = FilterConfig()


def cand(text="enter seven", **label_kw) -> Candidate:
    """A rule's input whose corrected text is the teacher's ``text``."""
    return Candidate(make_label(text, **label_kw), text, (), {}, "avg_logprob", -1.0)


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
