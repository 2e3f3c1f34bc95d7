"""The filter rules: each a small named function ``rule(candidate, config) -> Verdict``.

A label is kept when every rule keeps it; a dropped label lists every rule that dropped it,
and the first in :data:`RULES` order is its primary reason. To change a rule, change its
function here and its rows in the table of ``tests/test_filter.py``.

:data:`HALLUCINATION_RULES` are Granary's hallucination features (arXiv 2505.13404): few
distinct words (a loop), an over-long "word", too many characters per second. Its fourth,
stock phrases, is ``hallucination_phrase`` in :data:`RULES`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..metrics import DEFAULT_NORMALISER
from ..normalise import get_normaliser
from ..records import TeacherLabel, Verdict
from . import confidence as conf
from .correct import Correction, CorrectionConfig, find_hallucination_phrases, find_loop

# Whisper's silence rule (transcribe): no_speech_prob above 0.6 AND avg_logprob below -1.
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
COMPRESSION_RATIO_MAX = 2.4
# A trimmed loop that had been more than this share of the teacher's words leaves too
# little trustworthy text: the label is dropped rather than kept trimmed.
LOOP_MAX_SHARE = 0.5
# Below this agreement the two models heard different utterances: drop whatever the score.
MIN_AGREEMENT = 0.5
# wrong_language needs the detector this sure (short clips fool it; see rule_wrong_language).
LANGUAGE_MIN_PROB = 0.8
MIN_DURATION_S = 0.3
MAX_DURATION_S = 30.0  # Whisper's window; a longer label was cut wrongly upstream
# Granary's hallucination features. Each is off when its FilterConfig field is None.
# Measured on the reference transcripts in spoken form (../shared/data: AN4 train and test,
# speechocean762 pool and test, 3,578 utterances), none of which these limits drop:
# - distinct words / words, for labels of at least UNIQUE_WORDS_MIN_COUNT words: the
#   references reach 0.40 (AN4's repeated digits); a two-word loop of ten words is 0.2.
UNIQUE_WORDS_MIN_RATIO = 0.3
UNIQUE_WORDS_MIN_COUNT = 10
# - the longest run of letters: the references' longest word has 13; English words in
#   speech stay under 30, and Whisper's garbage ("Ahhhhhhhhh...") runs far longer.
MAX_WORD_CHARS = 35
# - letters and digits per second of the label in spoken form: the references reach 17.1
#   (AN4 train); more is text the audio cannot hold.
MAX_CHARS_PER_S = 25.0
# Characters are counted in this form, whatever normaliser the corrections applied.
CHAR_RATE_NORMALISER = "spoken_form"
_WORD = re.compile(r"\w[\w']*")
_LETTERS = re.compile(r"[^\W\d_]+")
_WORD_CHAR = re.compile(r"[^\W_]")


def check_confidence_choice(
    score: str | None,
    threshold: float | None,
    keep: float | None,
    target_wer: float | None,
    keep_at_least: float | None = None,
) -> None:
    """The one check of how the confidence threshold is chosen.

    Raises:
        ValueError: naming the option: more than one of threshold / keep / target_wer, a
            ``keep`` or ``keep_at_least`` outside (0, 1], ``keep_at_least`` with ``keep`` (which
            already fixes the retention), a negative ``target_wer`` or an unknown ``score``.
    """
    given = (("threshold", threshold), ("keep", keep), ("target_wer", target_wer))
    chosen = [name for name, value in given if value is not None]
    if len(chosen) > 1:
        raise ValueError(f"give only one of threshold, keep, target_wer (got {', '.join(chosen)})")
    if keep is not None and not 0 < keep <= 1:
        raise ValueError(f"keep is a fraction in (0, 1], got {keep}")
    if keep_at_least is not None:
        if not 0 < keep_at_least <= 1:
            raise ValueError(f"keep_at_least is a fraction in (0, 1], got {keep_at_least}")
        if keep is not None:
            raise ValueError("give keep or keep_at_least, not both: keep already fixes the retention")
    if target_wer is not None and target_wer < 0:
        raise ValueError(f"target_wer is a WER in percent (>= 0), got {target_wer}")
    if score is not None:
        conf.get_score(score)


@dataclass(frozen=True)
class FilterConfig:
    """Every threshold the rules use. Defaults are documented next to their constants.

    ``threshold`` None means "resolve it" (keep / target_wer / default; see
    :func:`asr_distill.quality.threshold.choose_threshold`). ``keep_at_least`` is a retention
    floor under any of these: a threshold that would keep less is lowered to keep that share.
    """

    score: str | None = None
    threshold: float | None = None
    keep: float | None = None
    target_wer: float | None = None
    keep_at_least: float | None = None
    min_agreement: float = MIN_AGREEMENT
    no_speech_prob: float = NO_SPEECH_PROB
    no_speech_logprob: float = NO_SPEECH_LOGPROB
    compression_ratio_max: float = COMPRESSION_RATIO_MAX
    loop_max_share: float = LOOP_MAX_SHARE
    min_words_per_s: float = conf.MIN_WORDS_PER_S
    max_words_per_s: float = conf.MAX_WORDS_PER_S
    min_duration_s: float = MIN_DURATION_S
    max_duration_s: float = MAX_DURATION_S
    language: str | None = "en"
    language_min_prob: float = LANGUAGE_MIN_PROB
    unique_words_min_ratio: float | None = UNIQUE_WORDS_MIN_RATIO
    unique_words_min_count: int = UNIQUE_WORDS_MIN_COUNT
    max_word_chars: int | None = MAX_WORD_CHARS
    max_chars_per_s: float | None = MAX_CHARS_PER_S
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    wer_normaliser: str = DEFAULT_NORMALISER

    def __post_init__(self) -> None:
        check_confidence_choice(self.score, self.threshold, self.keep, self.target_wer, self.keep_at_least)
        get_normaliser(self.wer_normaliser)


@dataclass(frozen=True)
class Candidate:
    """What the rules look at: the teacher's label, its corrected text, its scores."""

    label: TeacherLabel
    text: str
    corrections: tuple[Correction, ...]
    scores: Mapping[str, float]
    score_name: str
    threshold: float


Rule = Callable[[Candidate, FilterConfig], Verdict]


def _keep(rule: str, value: float | None = None, threshold: float | None = None) -> Verdict:
    return Verdict(rule, True, "", value, threshold)


def _drop(rule: str, reason: str, value: float | None = None, threshold: float | None = None) -> Verdict:
    return Verdict(rule, False, reason, value, threshold)


def rule_empty(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Nothing left to learn: no word after correction and normalisation."""
    words = len(get_normaliser(cfg.wer_normaliser)(c.text).split())
    if words == 0:
        return _drop("empty", f"no words in {c.text!r}", 0.0, 1.0)
    return _keep("empty", float(words), 1.0)


def rule_no_speech(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Whisper's own silence rule: no_speech_prob high and the decode unsure."""
    p, lp = c.label.no_speech_prob, c.label.avg_logprob
    if p > cfg.no_speech_prob and lp < cfg.no_speech_logprob:
        reason = (
            f"no_speech_prob {p:.2f} > {cfg.no_speech_prob} and avg_logprob "
            f"{lp:.2f} < {cfg.no_speech_logprob}"
        )
        return _drop("no_speech", reason, p, cfg.no_speech_prob)
    return _keep("no_speech", p, cfg.no_speech_prob)


def rule_too_short(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Too little audio to learn from (or a cut gone wrong upstream)."""
    d = c.label.duration
    if d < cfg.min_duration_s:
        return _drop("too_short", f"{d:.2f} s < {cfg.min_duration_s} s", d, cfg.min_duration_s)
    return _keep("too_short", d, cfg.min_duration_s)


def rule_too_long(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Longer than Whisper's window: the label was cut wrongly upstream."""
    d = c.label.duration
    if d > cfg.max_duration_s:
        return _drop("too_long", f"{d:.2f} s > {cfg.max_duration_s} s", d, cfg.max_duration_s)
    return _keep("too_long", d, cfg.max_duration_s)


def rule_wrong_language(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The detector is sure it heard another language than the one the data should be in.

    Unsure detections are not enough: on AN4 train, base's detector said Greek, Thai or
    Maori for 8 short English clips ("Yes", "110", "L-E-U-L-I-E-T-T-E") at probabilities
    0.32-0.58, and every one of those transcripts was right.
    """
    if cfg.language is None:
        return _keep("wrong_language")
    seen = c.label.detected_language or c.label.language
    sure = c.label.language_prob is None or c.label.language_prob >= cfg.language_min_prob
    if seen and seen != cfg.language and sure:
        reason = f"detected {seen!r}, expected {cfg.language!r}"
        return _drop("wrong_language", reason, c.label.language_prob, None)
    return _keep("wrong_language", c.label.language_prob)


def rule_repetition_loop(c: Candidate, cfg: FilterConfig) -> Verdict:
    """A decoding loop: compression ratio too high, an untrimmed loop, or a trimmed loop that was most of it.

    Trimming keeps the first copy; when the loop was most of the output, what is left is a guess.
    """
    cr = c.label.compression_ratio
    if cr > cfg.compression_ratio_max:
        reason = f"compression ratio {cr:.2f} > {cfg.compression_ratio_max}"
        return _drop("repetition_loop", reason, cr, cfg.compression_ratio_max)
    trimmed = [corr for corr in c.corrections if corr.rule == "trim_loops"]
    # Loops are judged on the teacher's words, as trim_loops sees them: after spelling-out,
    # "L-L-L-I-P-S" has four "l"s in a row and is no loop.
    if not trimmed and find_loop(c.label.text.split()) is not None:
        return _drop("repetition_loop", f"repeated n-gram in {c.label.text!r} (not trimmed)", cr)
    for corr in trimmed:
        before, after = len(corr.old.split()), len(corr.new.split())
        share = 1.0 - after / max(before, 1)
        if share > cfg.loop_max_share:
            reason = f"a loop was {share:.0%} of the teacher's words"
            return _drop("repetition_loop", reason, share, cfg.loop_max_share)
    return _keep("repetition_loop", cr, cfg.compression_ratio_max)


def rule_hallucination_phrase(c: Candidate, cfg: FilterConfig) -> Verdict:
    """A stock subtitle phrase ("thanks for watching") still in the label after correction."""
    found = find_hallucination_phrases(c.text)
    if found:
        return _drop("hallucination_phrase", f"stock phrase {found[0]!r}")
    return _keep("hallucination_phrase")


def rule_rate_out_of_range(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Too many or too few spoken words for the audio's length (a loop, or missed speech)."""
    words = conf.spoken_words(c.text)
    if words == 0:
        return _keep("rate_out_of_range")  # the empty rule owns this case
    rate = words / max(c.label.duration, 1e-6)
    if rate < cfg.min_words_per_s:
        reason = f"{rate:.2f} words/s < {cfg.min_words_per_s}"
        return _drop("rate_out_of_range", reason, rate, cfg.min_words_per_s)
    if rate > cfg.max_words_per_s:
        reason = f"{rate:.2f} words/s > {cfg.max_words_per_s}"
        return _drop("rate_out_of_range", reason, rate, cfg.max_words_per_s)
    return _keep("rate_out_of_range", rate)


def rule_teacher_disagreement(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The second decoding heard something else entirely (character agreement below ``min_agreement``).

    Characters, not words: two models often split spelled letters and digits differently
    ("XGIC 2" vs "xgic2"), which is no disagreement about what was said.
    """
    a = c.scores.get("agreement_chars")
    if a is None or math.isnan(a):
        return _keep("teacher_disagreement")  # no second decoding: nothing to compare
    if a < cfg.min_agreement:
        reason = f"agreement {a:.2f} < {cfg.min_agreement}"
        return _drop("teacher_disagreement", reason, a, cfg.min_agreement)
    return _keep("teacher_disagreement", a, cfg.min_agreement)


def rule_low_confidence(c: Candidate, cfg: FilterConfig) -> Verdict:
    """The selected confidence score is below the threshold (unscored counts as low)."""
    s = c.scores.get(c.score_name, math.nan)
    if math.isnan(s):
        reason = f"{c.score_name} undefined (no second decoding for this id?)"
        return _drop("low_confidence", reason, None, c.threshold)
    if s < c.threshold:
        reason = f"{c.score_name} {s:.3f} < {c.threshold:.3f}"
        return _drop("low_confidence", reason, s, c.threshold)
    return _keep("low_confidence", s, c.threshold)


def rule_low_unique_words(c: Candidate, cfg: FilterConfig) -> Verdict:
    """Few distinct words in a long label: a loop that trim_loops did not recognise (Granary)."""
    words = _WORD.findall(c.text.lower())
    if cfg.unique_words_min_ratio is None or len(words) < cfg.unique_words_min_count:
        return _keep("low_unique_words")
    ratio = len(set(words)) / len(words)
    if ratio < cfg.unique_words_min_ratio:
        n = len(words)
        reason = f"{len(set(words))} distinct of {n} words ({ratio:.2f} < {cfg.unique_words_min_ratio})"
        return _drop("low_unique_words", reason, ratio, cfg.unique_words_min_ratio)
    return _keep("low_unique_words", ratio, cfg.unique_words_min_ratio)


def rule_overlong_word(c: Candidate, cfg: FilterConfig) -> Verdict:
    """A run of letters longer than any word a person says ("Ahhhhhhhhh..."): invented (Granary)."""
    longest = max(_LETTERS.findall(c.text), key=len, default="")
    if cfg.max_word_chars is not None and len(longest) > cfg.max_word_chars:
        reason = f"a {len(longest)}-letter word {longest[:20]!r}... > {cfg.max_word_chars} letters"
        return _drop("overlong_word", reason, float(len(longest)), float(cfg.max_word_chars))
    limit = None if cfg.max_word_chars is None else float(cfg.max_word_chars)
    return _keep("overlong_word", float(len(longest)), limit)


def rule_char_rate(c: Candidate, cfg: FilterConfig) -> Verdict:
    """More letters per second than the audio can hold, counted in spoken form (Granary)."""
    chars = len(_WORD_CHAR.findall(get_normaliser(CHAR_RATE_NORMALISER)(c.text)))
    rate = chars / max(c.label.duration, 1e-6)
    if cfg.max_chars_per_s is not None and rate > cfg.max_chars_per_s:
        reason = f"{rate:.1f} characters/s > {cfg.max_chars_per_s}"
        return _drop("char_rate", reason, rate, cfg.max_chars_per_s)
    return _keep("char_rate", rate, cfg.max_chars_per_s)


# In priority order: a label's primary drop reason is the first rule that drops it.
# Granary's hallucination features (arXiv 2505.13404), in priority order. Their defaults drop
# none of the 3,578 reference transcripts of AN4 and speechocean762 (worst seen: a unique-word
# ratio of 0.40, a 13-letter word, 17.1 characters/s); a None threshold turns one off.
HALLUCINATION_RULES: dict[str, Rule] = {
    "low_unique_words": rule_low_unique_words,
    "overlong_word": rule_overlong_word,
    "char_rate": rule_char_rate,
}
RULES: dict[str, Rule] = {
    "too_short": rule_too_short,
    "too_long": rule_too_long,
    "empty": rule_empty,
    "no_speech": rule_no_speech,
    "wrong_language": rule_wrong_language,
    "hallucination_phrase": rule_hallucination_phrase,
    "repetition_loop": rule_repetition_loop,
    **HALLUCINATION_RULES,
    "rate_out_of_range": rule_rate_out_of_range,
    "teacher_disagreement": rule_teacher_disagreement,
    "low_confidence": rule_low_confidence,
}
# The rule whose threshold is chosen among the labels every other rule keeps.
CONFIDENCE_RULE = "low_confidence"


def apply_rules(c: Candidate, cfg: FilterConfig, rules: Iterable[Rule] | None = None) -> tuple[Verdict, ...]:
    """Every rule's verdict on one candidate, in :data:`RULES` order."""
    return tuple(rule(c, cfg) for rule in (RULES.values() if rules is None else rules))


__all__ = [
    "CONFIDENCE_RULE",
    "HALLUCINATION_RULES",
    "RULES",
    "Candidate",
    "FilterConfig",
    "Rule",
    "apply_rules",
    "check_confidence_choice",
    "rule_char_rate",
    "rule_empty",
    "rule_hallucination_phrase",
    "rule_low_confidence",
    "rule_low_unique_words",
    "rule_no_speech",
    "rule_overlong_word",
    "rule_rate_out_of_range",
    "rule_repetition_loop",
    "rule_teacher_disagreement",
    "rule_too_long",
    "rule_too_short",
    "rule_wrong_language",
]
