"""Reference-free confidence scores for teacher labels: named, documented, selectable.

Every score maps one :class:`~asr_distill.records.TeacherLabel` (and, for ``agreement``,
the same utterance decoded by a second model) to a float where **higher means more
trustworthy**, so one rule ("keep if score >= threshold") and one calibration curve serve
them all. Scores live in :data:`SCORES`, like normalisers live in their registry: a
report names the score it filtered on, and a config can pick any of them.

Token entropies are normalised to [0, 1] as NeMo's ``asr_confidence_utils`` does, with
the vocabulary size ``V``: ``lin`` is ``1 - H / H_max``; ``exp`` rescales ``exp(-H)``
between ``exp(-H_max)`` and 1 (Gibbs and Renyi: ``(V * exp(-H) - 1) / (V - 1)``). The
teacher stored Gibbs (Shannon), Tsallis and Renyi entropies in nats at the provenance's
``entropy_alpha``.

Measured on AN4 train (benchmarks/results/label_quality.json): ``agreement`` and its
combination ``agreement_entropy`` are by far the best; among single-model scores the
``min`` aggregations (``entropy_gibbs_exp_min``, ``token_logprob_min``) beat the means
(one wrong letter in a spelled word is one uncertain token). ``entropy_tsallis_exp_*``
is 0 for every label: with Whisper's 51,865 tokens and alpha 0.33 a Tsallis entropy is in
the hundreds of nats and ``exp(-h)`` underflows (NeMo's formula does the same); use the
``lin`` variants. ``no_speech``, ``compression`` and ``speaking_rate`` rank nothing on
clean read speech; they serve the filter's rules (silence, loops, missed speech).

A score's ``second`` is the other decodings of the utterance: one label (``--second``
given once), a sequence of them (given several times), or None. The pairwise scores
(``agreement*``) compare the teacher with the first; the ``consensus_*`` scores vote with
all of them, word by word (:mod:`~asr_distill.quality.consensus`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from ..normalise import get_normaliser
from ..records import TeacherLabel
from . import consensus as cons

AGREEMENT_NORMALISER = "format_insensitive"
DEFAULT_ALPHA = 0.33  # NeMo's default; used when a label's provenance does not name one
# Whisper's vocabulary sizes: English-only models, multilingual models, large-v3 and turbo.
VOCAB_EN = 51864
VOCAB_MULTILINGUAL = 51865
VOCAB_V3 = 51866
# Speaking rate (spoken words per second of audio) that a real utterance can have. AN4's
# spelled letters reach ~4 words/s; below 0.3 words/s most of the clip is unexplained.
MIN_WORDS_PER_S = 0.3
MAX_WORDS_PER_S = 5.0
# Whisper's own threshold: above this compression ratio transcribe() treats output as a loop.
COMPRESSION_RATIO_OK = 2.4
# Weights of the ``agreement_entropy`` combination: agreement decides, confidence breaks ties.
COMBINED_AGREEMENT_WEIGHT = 0.8

# The other decodings of one utterance, as a score receives them (see the module's docstring).
Opinions = TeacherLabel | Sequence[TeacherLabel] | None
ScoreFn = Callable[[TeacherLabel, Opinions], float]


@dataclass(frozen=True)
class Score:
    """A named confidence score.

    Attributes:
        name: registry key, written into reports.
        fn: ``fn(label, second)`` -> float, higher is more trustworthy. ``second`` is
            the same utterance decoded by other models: one label, a sequence of
            labels, or None when there is none.
        description: one line for ``--help`` and reports.
        needs_second: the score is undefined (NaN) without a second decoding.
    """

    name: str
    fn: ScoreFn
    description: str
    needs_second: bool = False


SCORES: dict[str, Score] = {}


def register_score(name: str, description: str, *, needs_second: bool = False):
    """Add a score function to :data:`SCORES`.

    Raises:
        ValueError: if ``name`` is taken (two modules must not silently redefine a score
            whose name is written into reports).
    """

    def decorator(fn: ScoreFn) -> ScoreFn:
        if name in SCORES:
            raise ValueError(f"confidence score {name!r} is already registered")
        SCORES[name] = Score(name, fn, description, needs_second)
        return fn

    return decorator


def get_score(name: str) -> Score:
    """The score registered as ``name``.

    Raises:
        ValueError: naming the known scores, so a typo fails before anything is read.
    """
    try:
        return SCORES[name]
    except KeyError:
        raise ValueError(
            f"unknown confidence score {name!r}; known scores: {', '.join(sorted(SCORES))}"
        ) from None


def score_labels(
    labels: Iterable[TeacherLabel],
    name: str,
    second: Mapping[str, TeacherLabel | Sequence[TeacherLabel]] | None = None,
) -> list[float]:
    """Score every label with score ``name``; ``second`` maps id -> its other decoding(s).

    Raises:
        ValueError: if the score needs a second decoding and none was given.
    """
    score = get_score(name)
    if score.needs_second and second is None:
        raise ValueError(f"score {name!r} needs a second decoding of the same audio (--second LABELS)")
    second = second or {}
    return [score.fn(label, second.get(label.id)) for label in labels]


def available_scores(has_second: bool) -> list[str]:
    """Names of the scores that can be computed, with or without a second decoding."""
    return [s.name for s in SCORES.values() if has_second or not s.needs_second]


# ---- helpers -------------------------------------------------------------------------


def opinions_of(second: Opinions) -> tuple[TeacherLabel, ...]:
    """Every other decoding a score was given, as a tuple (empty for None)."""
    if second is None:
        return ()
    return (second,) if isinstance(second, TeacherLabel) else tuple(second)


def first_opinion(second: Opinions) -> TeacherLabel | None:
    """The decoding the pairwise scores compare with: the first one given (None without any)."""
    opinions = opinions_of(second)
    return opinions[0] if opinions else None


def vocab_size(label: TeacherLabel) -> int:
    """Whisper's vocabulary size for the label's teacher (needed to normalise entropies).

    ``provenance.decoding["n_vocab"]`` wins when present; otherwise it follows the model
    name: ``*.en`` models have 51864 tokens, ``large-v3``/``turbo`` 51866, others 51865.
    The three differ by < 0.01 % in every normalised entropy, so a guess is harmless.
    """
    n = label.provenance.decoding.get("n_vocab")
    if n:
        return int(n)
    teacher = label.provenance.teacher.lower()
    if teacher.endswith(".en") or teacher.endswith("_en"):
        return VOCAB_EN
    if "large-v3" in teacher or "turbo" in teacher:
        return VOCAB_V3
    return VOCAB_MULTILINGUAL


def entropy_alpha(label: TeacherLabel) -> float:
    return float(label.provenance.decoding.get("entropy_alpha", DEFAULT_ALPHA))


def normalised_entropy(kind: str, norm: str, h: float, v: int, alpha: float) -> float:
    """A token's entropy ``h`` (nats) as a confidence in [0, 1], NeMo's way.

    Args:
        kind: ``gibbs``, ``tsallis`` or ``renyi``.
        norm: ``lin`` (1 - h / h_max) or ``exp`` (exp(-h) rescaled between exp(-h_max) and 1).
        h: the entropy of the step's next-token distribution.
        v: vocabulary size; ``h_max`` is the entropy of the uniform distribution over it.
        alpha: the Tsallis/Renyi order the entropy was computed with.
    """
    if kind == "tsallis":
        h_max = (v ** (1.0 - alpha) - 1.0) / (1.0 - alpha)
    elif kind in ("gibbs", "renyi"):
        h_max = math.log(v)
    else:
        raise ValueError(f"unknown entropy kind {kind!r}; use gibbs, tsallis or renyi")
    if norm == "lin":
        c = 1.0 - h / h_max
    elif norm == "exp":
        floor = math.exp(-h_max)
        c = (math.exp(-h) - floor) / (1.0 - floor)
    else:
        raise ValueError(f"unknown entropy normalisation {norm!r}; use lin or exp")
    return min(1.0, max(0.0, c))


def _aggregate(values: list[float], how: str) -> float:
    if not values:
        return math.nan
    return min(values) if how == "min" else sum(values) / len(values)


def spoken_words(text: str) -> int:
    """Words a speaker says for ``text`` (format-insensitive: "GMEF 39" is 6 words)."""
    return len(get_normaliser(AGREEMENT_NORMALISER)(text).split())


@cache
def _pair_agreement(a: str, b: str) -> float:
    from ..metrics import word_error_rate

    ra = get_normaliser(AGREEMENT_NORMALISER)(a)
    rb = get_normaliser(AGREEMENT_NORMALISER)(b)
    if not ra.split():
        return 1.0 if not rb.split() else 0.0
    wer = word_error_rate([a], [b], AGREEMENT_NORMALISER).wer / 100.0
    return max(0.0, 1.0 - wer)


def agreement_between(teacher_text: str, second_text: str) -> float:
    """1 - WER of ``second_text`` against ``teacher_text`` (format-insensitive), clipped to [0, 1].

    Two empty transcripts agree (1.0); an empty teacher against a non-empty second is 0.
    """
    return _pair_agreement(teacher_text, second_text)


# ---- the scores ----------------------------------------------------------------------


@register_score("avg_logprob", "the teacher's mean token log-probability (whisper's avg_logprob, <= 0)")
def avg_logprob(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    return float(label.avg_logprob)


@register_score("token_logprob_mean", "mean log-probability of the text tokens (<= 0)")
def token_logprob_mean(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    return _aggregate([t.logprob for t in label.tokens], "mean")


@register_score("token_logprob_min", "log-probability of the least likely text token: one bad word shows")
def token_logprob_min(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    return _aggregate([t.logprob for t in label.tokens], "min")


def _entropy_score(kind: str, norm: str, how: str) -> ScoreFn:
    def fn(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
        v, alpha = vocab_size(label), entropy_alpha(label)
        hs = [getattr(t, "entropy" if kind == "gibbs" else kind) for t in label.tokens]
        return _aggregate([normalised_entropy(kind, norm, h, v, alpha) for h in hs if h is not None], how)

    return fn


for _kind in ("gibbs", "tsallis", "renyi"):
    for _norm in ("exp", "lin"):
        for _how in ("mean", "min"):
            register_score(
                f"entropy_{_kind}_{_norm}_{_how}",
                f"{_how} over tokens of the {_kind} entropy confidence, {_norm}-normalised to [0, 1] (NeMo)",
            )(_entropy_score(_kind, _norm, _how))


@register_score("no_speech", "1 - no_speech_prob: the teacher's belief that there is speech at all")
def no_speech(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    return 1.0 - float(label.no_speech_prob)


@register_score("compression", "1 up to whisper's 2.4 compression ratio, then falling: repetition loops")
def compression(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    return min(1.0, COMPRESSION_RATIO_OK / max(float(label.compression_ratio), 1e-6))


def words_per_second(label: TeacherLabel) -> float:
    """Spoken words per second of audio (format-insensitive, see :func:`spoken_words`)."""
    return spoken_words(label.text) / max(label.duration, 1e-6)


@register_score(
    "speaking_rate",
    f"1 inside {MIN_WORDS_PER_S}-{MAX_WORDS_PER_S} spoken words/s, falling with the factor outside it",
)
def speaking_rate(label: TeacherLabel, second: TeacherLabel | None = None) -> float:
    rate = words_per_second(label)
    return max(0.0, min(1.0, rate / MIN_WORDS_PER_S, MAX_WORDS_PER_S / max(rate, 1e-6)))


def _pairwise(between: Callable[[str, str], float]) -> ScoreFn:
    """A score comparing the teacher's text with the first other decoding's (NaN without one)."""

    def fn(label: TeacherLabel, second: Opinions = None) -> float:
        second = first_opinion(second)
        return math.nan if second is None else between(label.text, second.text)

    return fn


agreement = register_score(
    "agreement",
    "1 - WER between the teacher and a second decoding (format_insensitive), clipped to [0, 1]",
    needs_second=True,
)(_pairwise(agreement_between))


@cache
def _pair_char_agreement(a: str, b: str) -> float:
    from rapidfuzz.distance import Levenshtein  # installed with jiwer

    norm = get_normaliser(AGREEMENT_NORMALISER)
    ca, cb = norm(a).replace(" ", ""), norm(b).replace(" ", "")
    if not ca:
        return 1.0 if not cb else 0.0
    return max(0.0, 1.0 - Levenshtein.distance(ca, cb) / len(ca))


def char_agreement_between(teacher_text: str, second_text: str) -> float:
    """1 - character error rate of ``second_text`` against ``teacher_text``, spaces ignored.

    Word boundaries are where two Whisper models disagree most about form, not content:
    "XGIC 2" vs "xgic2", "WC-VYH-7744" vs "Wcvih7744", "F-R-A-N-C-E-S-M-A-R-Y" vs
    "FRANCESMARY" are the same letters. Comparing the normalised characters without
    spaces scores those as agreeing while "Health" vs "Help" still differ.
    """
    return _pair_char_agreement(teacher_text, second_text)


agreement_chars = register_score(
    "agreement_chars",
    "1 - CER between the teacher and a second decoding, format_insensitive, spaces ignored",
    needs_second=True,
)(_pairwise(char_agreement_between))


@register_score(
    "agreement_entropy",
    f"{COMBINED_AGREEMENT_WEIGHT} x agreement + "
    f"{1 - COMBINED_AGREEMENT_WEIGHT:.1f} x entropy_gibbs_exp_mean: agreement first, confidence breaks ties",
    needs_second=True,
)
def agreement_entropy(label: TeacherLabel, second: Opinions = None) -> float:
    a = agreement(label, second)
    c = SCORES["entropy_gibbs_exp_mean"].fn(label, None)
    if math.isnan(c):
        c = 0.0
    return COMBINED_AGREEMENT_WEIGHT * a + (1.0 - COMBINED_AGREEMENT_WEIGHT) * c


def _consensus_score(measure: Callable[[cons.Consensus], float]) -> ScoreFn:
    """A score that votes with every other decoding (NaN without one) and reads ``measure`` off the vote."""

    def fn(label: TeacherLabel, second: Opinions = None) -> float:
        opinions = opinions_of(second)
        return measure(cons.consensus(label, opinions)) if opinions else math.nan

    return fn


# The consensus scores: name -> (description, what each reads off the vote).
CONSENSUS_SCORES: dict[str, tuple[str, Callable[[cons.Consensus], float]]] = {
    "consensus_agreement": (
        "mean share of the other decodings agreeing with each teacher word (and each gap where "
        "one heard more), word-aligned, format_insensitive; any number of --second",
        lambda c: c.agreement,
    ),
    "consensus_min_word": (
        f"the least confident word: {cons.AGREEMENT_WEIGHT} x its agreement + "
        f"{1 - cons.AGREEMENT_WEIGHT:.1f} x the teacher's word probability (or a gap others filled)",
        lambda c: c.min_confidence,
    ),
    "consensus_sure_share": (
        f"1 - the share of doubtful words (word confidence < {cons.DOUBTFUL_CONFIDENCE}) "
        "and of gaps where most other decodings heard more",
        lambda c: 1.0 - c.doubtful_share(),
    ),
}
for _name, (_description, _measure) in CONSENSUS_SCORES.items():
    register_score(_name, _description, needs_second=True)(_consensus_score(_measure))


__all__ = [
    "CONSENSUS_SCORES",
    "SCORES",
    "Opinions",
    "Score",
    "first_opinion",
    "opinions_of",
    "agreement_between",
    "char_agreement_between",
    "available_scores",
    "get_score",
    "normalised_entropy",
    "register_score",
    "score_labels",
    "spoken_words",
    "vocab_size",
    "words_per_second",
]
