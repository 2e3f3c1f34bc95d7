"""asr_distill.pack: short utterances planned into shared windows, and the label split back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from asr_distill.audio import SAMPLE_RATE
from asr_distill.pack import join_audio, plan_packs, split_label
from asr_distill.records import Provenance, TeacherLabel, TokenScore, Utterance, WordTiming
from asr_distill.testing.labels import make_label

PROV = Provenance("base", "ab" * 32, "whisper", {"word_timestamps": True}, "0.1")


def _utt(i: int, duration: float, speaker: str | None = "s1") -> Utterance:
    return Utterance(f"u{i}", f"/a/u{i}.wav", duration, text=f"ref {i}", speaker=speaker)


def test_windows_hold_consecutive_utterances_of_one_speaker_up_to_the_limit():
    utts = [
        _utt(0, 8),
        _utt(1, 8),
        _utt(2, 8),
        _utt(3, 8),
        _utt(4, 3, "s2"),
        _utt(5, 40, "s2"),
        _utt(6, 2, "s2"),
    ]
    packs = plan_packs(utts, max_s=30.0, gap_s=1.0)
    assert [[u.id for u in p.members] for p in packs] == [["u0", "u1", "u2"], ["u3"], ["u4"], ["u5"], ["u6"]]
    assert packs[0].spans == ((0.0, 8.0), (9.0, 17.0), (18.0, 26.0))
    assert packs[0].duration == 26.0 and packs[3].duration == 40.0
    with pytest.raises(ValueError, match="gap_s"):
        plan_packs(utts, gap_s=-1)


def test_joined_audio_puts_each_clip_at_its_planned_span():
    clips = [np.full(round(d * SAMPLE_RATE), k + 1, np.float32) for k, d in enumerate((1.5, 0.5, 2.0))]
    pack = plan_packs([_utt(k, len(c) / SAMPLE_RATE) for k, c in enumerate(clips)], gap_s=0.25)[0]
    audio = join_audio(clips, gap_s=0.25)
    assert len(audio) / SAMPLE_RATE == pytest.approx(pack.duration)
    for k, (start, end) in enumerate(pack.spans):
        inside = audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
        assert np.all(inside == k + 1)
    assert np.all(audio[round(1.5 * SAMPLE_RATE) : round(1.75 * SAMPLE_RATE)] == 0)


def _window_label(words: list[tuple[str, float, float]], token_texts: list[str]) -> TeacherLabel:
    tokens = tuple(TokenScore(t, -0.1 * (i + 1), 0.5) for i, t in enumerate(token_texts))
    text = "".join(w for w, _, _ in words)
    label = make_label(
        text, id="pack:u0", duration=12.0, avg_logprob=-0.3, tokens=tokens, no_speech_prob=0.01
    )
    return replace(label, provenance=PROV, words=tuple(WordTiming(w, s, e, 0.9) for w, s, e in words))


def test_a_window_label_splits_into_one_label_per_utterance_with_its_own_words_and_tokens():
    pack = plan_packs([_utt(0, 3.0), _utt(1, 4.0), _utt(2, 2.0)], gap_s=1.0)[0]  # 0-3, 4-8, 9-11
    words = [
        (" Hello", 0.2, 0.6),
        (" there.", 0.6, 1.2),
        (" Good", 4.3, 4.8),
        (" morning", 4.8, 5.5),
        (" lateword", 8.2, 8.7),
    ]  # the last word's middle is in the pause, nearer the second
    label = _window_label(words, [" Hello", " there", ".", " Good", " mor", "ning", " late", "word"])
    parts = split_label(label, pack)
    assert [p.id for p in parts] == ["u0", "u1", "u2"]
    assert [p.text for p in parts] == ["Hello there.", "Good morning lateword", ""]
    assert [len(p.tokens) for p in parts] == [3, 5, 0]
    # times are the clip's own, kept inside it: the word in the pause ends at the clip's end
    assert parts[1].words[0].start == pytest.approx(0.3) and parts[1].words[-1].end == pytest.approx(4.0)
    assert parts[0].avg_logprob == pytest.approx(np.mean([-0.1, -0.2, -0.3]), abs=1e-5)
    assert parts[2].avg_logprob == 0.0 and parts[2].compression_ratio == 0.0
    assert [p.ref_text for p in parts] == ["ref 0", "ref 1", "ref 2"]
    assert all(p.no_speech_prob == 0.01 and p.provenance == PROV for p in parts)


def test_tokens_that_decode_apart_differently_still_go_to_their_word():
    pack = plan_packs([_utt(0, 2.0), _utt(1, 2.0)], gap_s=1.0)[0]
    # one character split across two byte-level tokens, each decoding to a replacement mark
    label = _window_label([(" 雅", 0.5, 1.0), (" yes", 3.5, 4.0)], [" \ufffd", "\ufffd", " yes"])
    parts = split_label(label, pack)
    assert [len(p.tokens) for p in parts] == [2, 1] and [p.text for p in parts] == ["雅", "yes"]


def test_a_window_with_text_but_no_word_timings_is_refused():
    pack = plan_packs([_utt(0, 2.0), _utt(1, 2.0)])[0]
    label = _window_label([(" a", 0.1, 0.2)], [" a"])
    with pytest.raises(ValueError, match="word-timestamps"):
        split_label(TeacherLabel(**{**label.__dict__, "words": ()}), pack)
