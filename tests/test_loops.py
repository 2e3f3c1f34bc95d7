"""The repeated n-gram loop guard: what counts as a loop, and decoding redoing a constructed one.

A scripted backend answers a repetition loop at temperature 0 and the clean transcript when
sampled: the guard must send the loop up the ladder in labeling and in evaluation alike,
even though its compression ratio is under Whisper's 2.4 (the check Whisper alone has).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURE

from asr_distill.quality.correct import find_loop
from asr_distill.records import Provenance, Utterance
from asr_distill.teacher.decode import decode_batch
from asr_distill.teacher.loops import loops, repeated_ngram
from asr_distill.teacher.options import LabelOptions

LOOP = "the order number is 4 4 4 4 4 4 please"
CLEAN = "the order number is 4 please"

# (text, (start, n, copies) or None)
CASES = [
    ("the the the the", (0, 1, 4)),
    ("1, 2, 1, 2, 1, 2, 1, 2, 1, 2", (0, 2, 5)),
    ("No, no, no, no.", (0, 1, 4)),
    ("thank you thank you thank you thank you for calling", (0, 2, 4)),
    ("so I said call me back call me back call me back call me back", (3, 3, 4)),
    (LOOP, (4, 1, 6)),
    ("five five five", None),  # AN4: three copies are speech
    ("l l l i p s", None),
    ("L-L-L-I-P-S", None),  # one word
    ("- - - - -", None),  # punctuation only
    ("my number is 555 1234", None),
    ("", None),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_repeated_ngram_finds_the_first_loop(text, expected):
    assert repeated_ngram(text.split()) == expected
    assert loops(text) == (expected is not None)


@pytest.mark.parametrize("text", [t for t, _ in CASES if t.strip("- ")])
def test_the_guard_agrees_with_the_loop_trimmer(text):
    """Decoding redoes exactly what correction would trim: one definition of a loop."""
    assert (repeated_ngram(text.split()) is None) == (find_loop(text.split()) is None)


def test_no_reference_of_the_fixture_counts_as_a_loop():
    refs = [json.loads(line)["text"] for line in FIXTURE.read_text().splitlines()]
    assert refs and not any(loops(r) for r in refs)


class _Tokenizer:
    timestamp_begin = 50_000

    def decode(self, tokens):
        return f"t{tokens[0]}"


class ScriptedBackend:
    """Says ``greedy`` at temperature 0 and ``CLEAN`` when sampled; records every pass it is asked for."""

    tokenizer = _Tokenizer()

    def __init__(self, greedy: str = LOOP):
        self.greedy = greedy
        self.passes: list[tuple[float, float]] = []  # (window, temperature)
        self._window = 0.0

    def encode(self, audios, window):
        self._window = window
        return np.zeros((len(audios), 1))

    def detect_language(self, feats):
        return [("en", 1.0)] * len(feats)

    def select(self, feats, idx):
        return feats[idx]

    def generate(self, feats, step):
        from asr_distill.teacher.backends import RawHypothesis

        self.passes.append((self._window, step.temperature))
        text = self.greedy if step.temperature == 0.0 else CLEAN
        tokens = tuple(range(len(text.split())))
        stats = tuple((-0.1, 0.1, 0.1, 0.1) for _ in tokens)
        return [RawHypothesis(tokens, text, -0.1, 0.01, stats, ("en", 1.0)) for _ in range(len(feats))]


def _decode(options: LabelOptions, greedy: str = LOOP):
    backend = ScriptedBackend(greedy)
    utt = Utterance("u1", "u1.wav", duration=3.0, text=CLEAN)
    prov = Provenance("scripted", "0", "scripted", {}, "0")
    (label,) = decode_batch(backend, [(utt, np.zeros(48_000, dtype=np.float32))], options, prov)
    return label, backend.passes


def test_a_constructed_loop_is_redone_up_the_ladder_when_labeling():
    from whisper.utils import compression_ratio

    assert compression_ratio(LOOP) < 2.4  # Whisper's own check lets this loop through
    label, passes = _decode(LabelOptions())
    assert label.text == CLEAN and label.temperature == 0.2
    assert passes == [(20.0, 0.0), (30.0, 0.0), (30.0, 0.2)]
    # the same without the compression check: the n-gram guard alone catches it
    assert _decode(LabelOptions(compression_ratio_threshold=None))[0].text == CLEAN


def test_evaluation_decodes_every_model_with_the_same_guard():
    from asr_distill.evaluate import guarded
    from asr_distill.teacher.options import ContextFloor

    label, passes = _decode(guarded(LabelOptions(windows=ContextFloor(10.0))))
    assert label.text == CLEAN and passes == [(10.0, 0.0), (30.0, 0.0), (30.0, 0.2)]


def test_speech_said_three_times_is_kept_as_decoded():
    greedy = "the order number is 4 4 4 please"
    label, passes = _decode(LabelOptions(), greedy=greedy)
    assert label.text == greedy and passes == [(20.0, 0.0)]
