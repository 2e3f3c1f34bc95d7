"""The teacher resolves offline, converts CTranslate2 weights faithfully, and decodes in batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import whisper

from asr_distill import TeacherNotFoundError, load_teacher
from asr_distill.audio import load_audio
from asr_distill.manifest import read_manifest
from asr_distill.records import Provenance
from asr_distill.teacher import ct2
from asr_distill.teacher.backends import make_backend
from asr_distill.teacher.decode import decode_batch
from asr_distill.teacher.options import FULL_CONTEXT, ContextFloor, DecodePass, LabelOptions


def _clips(manifest):
    return [(u, load_audio(u.audio_filepath)) for u in read_manifest(manifest)]


@pytest.mark.slow
def test_converted_tiny_en_matches_faster_whisper(an4_fixture, tiny_teacher):
    """Same weights, two engines: greedy transcripts of real clips must be identical."""
    from faster_whisper import WhisperModel

    fw = WhisperModel(str(tiny_teacher.ct2_dir), device="cpu", compute_type="float32")
    opts = dict(
        language="en", beam_size=1, temperature=0.0, without_timestamps=True, condition_on_previous_text=False
    )
    for _, audio in _clips(an4_fixture):
        ours = whisper.transcribe(tiny_teacher.model, audio, fp16=False, **opts)["text"].strip()
        segments, _ = fw.transcribe(audio, vad_filter=False, **opts)
        theirs = " ".join(s.text.strip() for s in segments)
        assert ours == theirs and ours


def test_conversion_cached_in_openai_whisper_layout(tiny_teacher, tmp_path):
    from asr_distill.teacher.resolve import cache_dir

    cached = list((cache_dir() / "converted").glob(f"tiny.en-{tiny_teacher.weights_sha256[:16]}.pt"))
    assert len(cached) == 1
    model = whisper.load_model(str(cached[0]), device="cpu")
    assert model.dims == tiny_teacher.model.dims
    for (k, a), b in zip(model.state_dict().items(), tiny_teacher.model.state_dict().values(), strict=True):
        assert torch.equal(a.float(), b.float()), k


def test_dims_of_packaged_models(tiny_teacher):
    d = tiny_teacher.model.dims
    assert (d.n_audio_layer, d.n_text_layer, d.n_audio_state, d.n_vocab) == (4, 4, 384, 51864)
    assert not tiny_teacher.is_multilingual


def test_truncated_model_bin_is_a_clear_error(tiny_teacher, tmp_path):
    src = tiny_teacher.ct2_dir / "model.bin"
    bad = tmp_path / "model.bin"
    bad.write_bytes(src.read_bytes()[:1_000_000])
    with pytest.raises(ct2.CT2FormatError, match="truncated"):
        ct2.read_model_bin([bad])


def test_ct2_directory_path_resolves(tiny_teacher):
    t = load_teacher(tiny_teacher.ct2_dir)
    assert t.weights_sha256 == tiny_teacher.weights_sha256


def test_unknown_name_lists_offline_options():
    with pytest.raises(TeacherNotFoundError, match="Offline, these work"):
        load_teacher("no-such-model")


def test_model_problem_says_what_load_teacher_would_refuse_without_loading(tiny_teacher, tmp_path):
    from asr_distill.teacher.resolve import model_problem

    (tmp_path / "empty").mkdir()
    (tmp_path / "s.pt").write_bytes(b"not read")  # a file is taken on trust: loading it is the stage's job
    assert model_problem("tiny.en") is None and model_problem("large-v3") is None  # packaged; downloadable
    assert model_problem(tmp_path / "s.pt") is None
    assert model_problem(tiny_teacher.ct2_dir) is None
    assert "without model.bin" in model_problem(tmp_path / "empty")
    assert model_problem("runs/x/student.pt") == "runs/x/student.pt does not exist"
    assert "neither a file" in model_problem("tiny.eng")


def test_directory_without_model_bin(tmp_path):
    with pytest.raises(TeacherNotFoundError, match="without model.bin"):
        load_teacher(tmp_path)


@pytest.mark.parametrize("backend", ["whisper", "faster-whisper"])
def test_batched_decode_carries_confidence(an4_fixture, tiny_teacher, backend):
    clips = _clips(an4_fixture)
    prov = Provenance("tiny.en", tiny_teacher.weights_sha256, backend, {}, "test")
    labels = decode_batch(make_backend(tiny_teacher, backend), clips, LabelOptions(), prov)
    assert [lab.id for lab in labels] == [u.id for u, _ in clips]
    for lab in labels:
        assert lab.text and lab.tokens
        assert "".join(t.text for t in lab.tokens).strip() == lab.text
        lps = np.array([t.logprob for t in lab.tokens])
        assert (lps <= 0).all() and all(t.entropy >= 0 for t in lab.tokens)
        assert -3 < lab.avg_logprob <= 0 and 0 <= lab.no_speech_prob <= 1
        assert lab.window_s == 20.0  # all fixture clips are short: the default 20 s floor


@pytest.mark.slow
def test_short_context_agrees_with_full_window(an4_fixture, tiny_teacher):
    """The 10 s encoder context is a speed lever; on these clips it must not change the words."""
    from asr_distill.metrics import word_error_rate

    clips = _clips(an4_fixture)
    prov = Provenance("tiny.en", tiny_teacher.weights_sha256, "whisper", {}, "test")
    backend = make_backend(tiny_teacher, "whisper")
    short = decode_batch(backend, clips, LabelOptions(windows=ContextFloor(10.0)), prov)
    full = decode_batch(backend, clips, LabelOptions(windows=FULL_CONTEXT), prov)
    refs = [u.text for u, _ in clips]
    wer_short = word_error_rate(refs, [x.text for x in short]).wer
    wer_full = word_error_rate(refs, [x.text for x in full]).wer
    assert wer_short <= wer_full + 5.0


@pytest.mark.slow
def test_when_every_try_fails_the_most_probable_is_kept(an4_fixture, tiny_teacher):
    """A logprob threshold of 0 fails every try; adding hotter tries must never lower the kept score."""
    clips = _clips(an4_fixture)[:4]
    prov = Provenance("tiny.en", tiny_teacher.weights_sha256, "whisper", {}, "test")
    backend = make_backend(tiny_teacher, "whisper")
    torch.manual_seed(0)
    greedy = decode_batch(backend, clips, LabelOptions(logprob_threshold=0.0, temperatures=(0.0,)), prov)
    ladder = decode_batch(
        backend, clips, LabelOptions(logprob_threshold=0.0, temperatures=(0.0, 0.6, 1.0), best_of=2), prov
    )
    for g, lad in zip(greedy, ladder, strict=True):
        assert lad.avg_logprob >= g.avg_logprob
        assert lad.temperature > 0 or lad.text == g.text


@pytest.mark.slow
def test_timestamp_tokens_do_not_count_in_avg_logprob(an4_fixture, tiny_teacher):
    """Timestamp mode must score the same words like plain mode: the fallback threshold means one thing."""
    clips = _clips(an4_fixture)
    prov = Provenance("tiny.en", tiny_teacher.weights_sha256, "whisper", {}, "test")
    backend = make_backend(tiny_teacher, "whisper")
    one_try = dict(temperatures=(0.0,), windows=FULL_CONTEXT)
    ts = decode_batch(backend, clips, LabelOptions(timestamps=True, **one_try), prov)
    plain = decode_batch(backend, clips, LabelOptions(timestamps=False, **one_try), prov)
    same = [(a, b) for a, b in zip(ts, plain, strict=True) if a.text == b.text]
    assert same
    for a, b in same:
        assert abs(a.avg_logprob - b.avg_logprob) < 0.15, (a.text, a.avg_logprob, b.avg_logprob)


@pytest.mark.parametrize(
    "floor, duration, window",
    [
        (20.0, 3.0, 20.0),
        (10.0, 3.0, 10.0),
        (10.0, 12.0, 15.0),
        (15.0, 3.0, 15.0),
        (15.0, 16.0, 20.0),
        (20.0, 25.0, 30.0),
        (10.0, 29.7, 30.0),
    ],
)
def test_window_floor(floor, duration, window):
    assert ContextFloor(floor).window_for(duration) == window
    assert LabelOptions(windows=ContextFloor(floor)).window_for(duration) == window
    assert LabelOptions(windows=ContextFloor(floor, short=False)).window_for(duration) == 30.0


def test_default_options_keep_the_20s_floor_and_their_provenance_keys():
    """Label files record the options flat, in the order and under the names they always had."""
    assert LabelOptions().window_for(3.0) == 20.0 and FULL_CONTEXT.window_for(3.0) == 30.0
    expected = {
        "beam_size": None,
        "best_of": 5,
        "temperatures": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "compression_ratio_threshold": 2.4,
        "logprob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "language": "en",
        "task": "transcribe",
        "short_context": True,
        "min_window_s": 20.0,
        "max_tokens": None,
        "entropy_alpha": 0.33,
        "timestamps": True,
        "word_timestamps": False,
    }
    d = LabelOptions().as_dict()
    assert d == expected and list(d) == list(expected)
    assert LabelOptions(windows=FULL_CONTEXT).as_dict()["short_context"] is False


def test_options_reject_bad_combinations():
    with pytest.raises(ValueError, match="min_window_s"):
        ContextFloor(12.0)
    with pytest.raises(TypeError, match="windows"):
        LabelOptions(windows=10.0)
    with pytest.raises(ValueError, match="beam_size"):
        LabelOptions(beam_size=0)
    with pytest.raises(ValueError, match="task"):
        LabelOptions(task="summarise")


@pytest.mark.slow
def test_statistics_read_during_decoding_equal_a_teacher_forced_pass(an4_fixture, tiny_teacher):
    """Greedy decoding scores its tokens as it goes; a second forward pass over them must agree."""
    backend = make_backend(tiny_teacher, "whisper", precision="fp32")
    clips = _clips(an4_fixture)[:5]
    feats = backend.encode([a for _, a in clips], 20.0)
    greedy = DecodePass("en", max_tokens=60)  # greedy, timestamp mode, entropy alpha 0.33
    hyps = backend.generate(feats, greedy)
    prefix = list(backend.tokenizer.sot_sequence)
    forced = backend._token_stats(feats, prefix, [list(h.tokens) for h in hyps], 0.33)
    for h, (stats, avg) in zip(hyps, forced, strict=True):
        assert len(h.token_stats) == len(stats) == len(h.tokens) > 0
        # columns differ in scale (log-probs near 1, sums in the hundreds): relative and absolute
        np.testing.assert_allclose(np.array(h.token_stats), np.array(stats), rtol=1e-4, atol=2e-3)
        assert abs(h.avg_logprob - avg) < 1e-3
    # a row stopped by the length cap has no end-token step: it falls back to the forced pass
    capped = backend.generate(feats, dataclasses.replace(greedy, max_tokens=3))
    assert all(len(h.tokens) == len(h.token_stats) <= 3 for h in capped)


@pytest.mark.slow
def test_rows_leave_the_batch_when_they_end_and_no_token_changes(an4_fixture, tiny_teacher, monkeypatch):
    """Greedy decoding stops computing a clip once it ends; Whisper's own loop keeps every row to the end.

    Both must write the same tokens with the same statistics (the stock loop's are scored by
    teacher forcing) and the same no-speech probability.
    """
    from asr_distill.teacher.backends import _FeaturesTask

    backend = make_backend(tiny_teacher, "whisper", precision="fp32")
    feats = backend.encode([a for _, a in _clips(an4_fixture)], 20.0)
    greedy = DecodePass("en", max_tokens=60)
    sampled = DecodePass("en", temperature=0.6, best_of=1, max_tokens=60)  # keeps every row

    def both_passes() -> list:
        torch.manual_seed(0)
        return backend.generate(feats, greedy) + backend.generate(feats, sampled)

    ours = both_passes()
    assert len({len(h.tokens) for h in ours[: len(feats)]}) > 1  # clips end at different steps
    monkeypatch.setattr(_FeaturesTask, "tracks_steps", property(lambda self: False))
    stock = both_passes()
    for a, b in zip(ours, stock, strict=True):
        assert a.tokens == b.tokens and a.text == b.text
        assert abs(a.no_speech_prob - b.no_speech_prob) < 1e-5
        assert abs(a.avg_logprob - b.avg_logprob) < 1e-3
        np.testing.assert_allclose(np.array(a.token_stats), np.array(b.token_stats), rtol=1e-4, atol=2e-3)


@pytest.mark.slow
def test_language_read_from_the_decoding_pass_equals_detection(an4_fixture, tiny_teacher):
    """The start-of-transcript distribution is the detector's: reading it from ``generate`` is free."""
    base = load_teacher("base")  # the packaged multilingual teacher
    backend = make_backend(base, "whisper", precision="fp32")
    feats = backend.encode([a for _, a in _clips(an4_fixture)[:3]], 20.0)
    hyps = backend.generate(feats, DecodePass("en", max_tokens=40))
    for h, (code, prob) in zip(hyps, backend.detect_language(feats), strict=True):
        assert h.language[0] == code == "en"
        assert abs(h.language[1] - prob) < 1e-4
    tiny = make_backend(tiny_teacher, "whisper")
    assert tiny.detect_language(torch.zeros(2, 10, 384)) == [("en", None)] * 2  # English-only


def test_precision_choice():
    from asr_distill.teacher.backends import encoder_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert encoder_dtype("fp32", cpu) is None and encoder_dtype("bf16", cpu) is torch.bfloat16
    assert encoder_dtype("auto", gpu) is torch.float16
    assert encoder_dtype("auto", cpu) is None  # no model to time: float32 (teacher.precision times one)
    with pytest.raises(ValueError, match="precision must be one of"):
        encoder_dtype("int4", cpu)


@pytest.mark.slow
def test_bf16_encoder_keeps_the_words(an4_fixture, tiny_teacher):
    """bf16 is a speed lever; on real clips it must leave the transcripts (nearly) as float32 has them."""
    from asr_distill.metrics import word_error_rate

    clips = _clips(an4_fixture)
    prov = Provenance("tiny.en", tiny_teacher.weights_sha256, "whisper", {}, "test")
    texts = {}
    for precision in ("fp32", "bf16"):
        backend = make_backend(tiny_teacher, "whisper", precision=precision)
        assert backend.precision == precision
        texts[precision] = [x.text for x in decode_batch(backend, clips, LabelOptions(), prov)]
    refs = [u.text for u, _ in clips]
    assert word_error_rate(refs, texts["bf16"]).wer <= word_error_rate(refs, texts["fp32"]).wer + 5.0
    assert sum(a == b for a, b in zip(texts["fp32"], texts["bf16"], strict=True)) >= len(clips) - 2
