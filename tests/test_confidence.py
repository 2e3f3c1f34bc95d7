"""Confidence scores: registry, NeMo entropy normalisation, agreement, direction (higher = better)."""

from __future__ import annotations

import math

import pytest

from asr_distill.quality.confidence import (
    SCORES,
    agreement_between,
    char_agreement_between,
    get_score,
    normalised_entropy,
    register_score,
    score_labels,
    vocab_size,
)
from asr_distill.quality.filter import read_labels
from asr_distill.records import TokenScore
from asr_distill.testing.labels import make_label

V = 51865


def uniform_entropies(v: int, alpha: float) -> tuple[float, float, float]:
    """Gibbs, Tsallis, Renyi entropy of the uniform distribution over v tokens: the maxima."""
    return math.log(v), (v ** (1 - alpha) - 1) / (1 - alpha), math.log(v)


@pytest.mark.parametrize("kind", ["gibbs", "tsallis", "renyi"])
@pytest.mark.parametrize("norm", ["exp", "lin"])
def test_entropy_confidence_is_one_when_certain_and_zero_when_uniform(kind, norm):
    h_max = dict(zip(["gibbs", "tsallis", "renyi"], uniform_entropies(V, 0.33), strict=True))[kind]
    assert normalised_entropy(kind, norm, 0.0, V, 0.33) == pytest.approx(1.0)
    assert normalised_entropy(kind, norm, h_max, V, 0.33) == pytest.approx(0.0, abs=1e-9)
    mid = normalised_entropy(kind, norm, h_max / 4, V, 0.33)
    assert 0.0 < mid < 1.0


def test_gibbs_exp_matches_nemo_formula():
    # NeMo: (V * exp(-H) - 1) / (V - 1)
    h = 1.3
    assert normalised_entropy("gibbs", "exp", h, V, 0.33) == pytest.approx((V * math.exp(-h) - 1) / (V - 1))


def test_unknown_entropy_kind_or_norm_is_refused():
    with pytest.raises(ValueError, match="gibbs"):
        normalised_entropy("shannon", "exp", 1.0, V, 0.33)
    with pytest.raises(ValueError, match="lin or exp"):
        normalised_entropy("gibbs", "log", 1.0, V, 0.33)


@pytest.mark.parametrize(
    "teacher, expected", [("base", 51865), ("tiny.en", 51864), ("large-v3", 51866), ("ckpt.pt", 51865)]
)
def test_vocab_size_follows_the_teacher(teacher, expected):
    assert vocab_size(make_label(teacher=teacher)) == expected


@pytest.mark.parametrize(
    "teacher_text, second_text, expected",
    [
        ("G-M-E-F 39", "g m e f three nine", 1.0),  # format differences are not disagreement
        ("enter seven", "erase seven", 0.5),
        ("enter seven", "enter eleven", 0.0),  # "7" vs "1 1": one substitution, one insertion
        ("enter seven", "", 0.0),
        ("", "", 1.0),
        ("", "hello", 0.0),
        ("yes", "no no no", 0.0),  # WER 3 -> clipped
    ],
)
def test_agreement_is_one_minus_wer(teacher_text, second_text, expected):
    assert agreement_between(teacher_text, second_text) == pytest.approx(expected)


# (score, better label kwargs, worse label kwargs): every score must rank the better one higher.
DIRECTION = [
    ("avg_logprob", dict(avg_logprob=-0.1), dict(avg_logprob=-1.5)),
    ("token_logprob_mean", dict(avg_logprob=-0.1), dict(avg_logprob=-1.5)),
    (
        "token_logprob_min",
        dict(tokens=[TokenScore(" a", -0.1, 0.2), TokenScore(" b", -0.2, 0.2)]),
        dict(tokens=[TokenScore(" a", -0.1, 0.2), TokenScore(" b", -4.0, 0.2)]),
    ),
    (
        "entropy_gibbs_exp_mean",
        dict(tokens=[TokenScore(" a", -0.1, 0.1)]),
        dict(tokens=[TokenScore(" a", -0.1, 3.0)]),
    ),
    (
        "entropy_renyi_lin_min",
        dict(tokens=[TokenScore(" a", -0.1, 0.1, 5.0, 1.0)]),
        dict(tokens=[TokenScore(" a", -0.1, 0.1, 5.0, 8.0)]),
    ),
    (
        "entropy_tsallis_lin_mean",
        dict(tokens=[TokenScore(" a", -0.1, 0.1, 5.0, 1.0)]),
        dict(tokens=[TokenScore(" a", -0.1, 0.1, 900.0, 1.0)]),
    ),
    ("no_speech", dict(no_speech_prob=0.01), dict(no_speech_prob=0.9)),
    ("compression", dict(compression_ratio=1.2), dict(compression_ratio=4.0)),
    ("speaking_rate", dict(text="enter seven", duration=2.0), dict(text="enter", duration=30.0)),
    ("speaking_rate", dict(text="enter seven", duration=2.0), dict(text="one " * 40, duration=2.0)),
]


@pytest.mark.parametrize("name, better, worse", DIRECTION)
def test_higher_score_means_more_trustworthy(name, better, worse):
    fn = get_score(name).fn
    assert fn(make_label(**better), None) > fn(make_label(**worse), None)


@pytest.mark.parametrize(
    "teacher_text, second_text, expected",
    [
        ("XGIC 2", "xgic2", 1.0),  # the same letters, split differently
        ("F-R-A-N-C-E-S-M-A-R-Y.", "FRANCESMARY", 1.0),
        ("Health", "Help", 0.5),  # h e a l t h vs h e l p: 3 edits / 6
        ("enter seven", "", 0.0),
        ("", "", 1.0),
    ],
)
def test_char_agreement_ignores_word_boundaries(teacher_text, second_text, expected):
    assert char_agreement_between(teacher_text, second_text) == pytest.approx(expected)


def test_agreement_scores_need_a_second_decoding():
    labels = [make_label("enter seven", id="a"), make_label("enter nine", id="b")]
    second = {"a": make_label("Enter 7.", id="a"), "b": make_label("enter five", id="b")}
    assert score_labels(labels, "agreement", second) == pytest.approx([1.0, 0.5])
    combined = score_labels(labels, "agreement_entropy", second)
    assert combined[0] > combined[1]
    with pytest.raises(ValueError, match="second decoding"):
        score_labels(labels, "agreement")
    assert math.isnan(get_score("agreement").fn(labels[0], None))


def test_registry_names_scores_and_refuses_duplicates():
    assert {
        "avg_logprob",
        "agreement",
        "no_speech",
        "compression",
        "speaking_rate",
        "entropy_gibbs_exp_mean",
        "entropy_tsallis_lin_min",
        "entropy_renyi_exp_mean",
    } <= set(SCORES)
    assert all(s.description for s in SCORES.values())
    with pytest.raises(ValueError, match="known scores"):
        get_score("confidence_of_the_moon")
    with pytest.raises(ValueError, match="already registered"):
        register_score("avg_logprob", "again")(lambda label, second: 0.0)


def test_scores_on_real_teacher_labels_are_finite_and_bounded(fixture_labels):
    for lab in read_labels(fixture_labels):
        for name, s in SCORES.items():
            v = s.fn(lab, lab)
            assert math.isfinite(v), (name, lab.id)
            if name.startswith("entropy_") or name in (
                "no_speech",
                "compression",
                "speaking_rate",
                "agreement",
            ):
                assert 0.0 <= v <= 1.0, (name, v)
