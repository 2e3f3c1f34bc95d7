"""Loading, checking and splitting audio: every bad input gets its reason, good audio is kept."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from bad_inputs import (
    CASE_NAMES,
    LONG_CASE,
    LONG_PAUSE_S,
    LONG_PERIOD_S,
    LONG_SECONDS,
    BadCase,
    make_bad_inputs,
    speechlike,
)

from asr_distill import audio as audio_module
from asr_distill.audio import (
    MAX_SEGMENT_S,
    SAMPLE_RATE,
    SKIP_REASONS,
    AudioError,
    audio_info,
    iter_audio,
    iter_segments,
    load_audio,
    split_at_pauses,
)
from asr_distill.jsonl import atomic_write_jsonl
from asr_distill.manifest import read_manifest
from asr_distill.records import Skip, Utterance

RNG_SEED = 7


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Iterator[dict[str, BadCase]]:
    table = {c.name: c for c in make_bad_inputs(tmp_path_factory.mktemp("bad_inputs"))}
    yield table
    table[LONG_CASE].path.unlink()  # ~34 MB: do not leave it in pytest's kept temp folders


@pytest.fixture(scope="module")
def through_manifest(cases, tmp_path_factory) -> dict[str, list]:
    """Every case as a manifest line without duration, run through read_manifest + iter_audio."""
    manifest = tmp_path_factory.mktemp("manifest") / "manifest.jsonl"
    atomic_write_jsonl(manifest, [{"id": c.name, "audio_filepath": str(c.path)} for c in cases.values()])
    out: dict[str, list] = {}
    for item in iter_audio(read_manifest(manifest)):
        record = item if isinstance(item, Skip) else item[0]
        out.setdefault(record.id.split("@")[0], []).append(item)
    return out


def _check_outcome(case: BadCase, outcome: list) -> None:
    skips = [o for o in outcome if isinstance(o, Skip)]
    if case.reason is not None:
        assert len(outcome) == 1 and len(skips) == 1, outcome
        assert skips[0].reason == case.reason, skips[0].message
        assert skips[0].reason in SKIP_REASONS
        assert skips[0].id == case.name
        assert skips[0].message
        return
    assert not skips, [s.message for s in skips]
    for utt, samples in outcome:
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert np.isfinite(samples).all()
        assert len(samples) <= MAX_SEGMENT_S * SAMPLE_RATE
        assert utt.duration <= MAX_SEGMENT_S
    total = sum(len(s) for _, s in outcome)
    if case.samples is not None:
        assert abs(total - case.samples) <= len(outcome), (total, case.samples)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_through_manifest(name, cases, through_manifest):
    _check_outcome(cases[name], through_manifest[name])


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n != LONG_CASE])
def test_bad_input_with_manifest_duration(name, cases):
    case = cases[name]
    utt = Utterance(id=name, audio_filepath=str(case.path), duration=case.duration or 1.0)
    _check_outcome(case, list(iter_segments(utt)))


def test_direct_load_raises_audio_error_with_reason(cases):
    for case in cases.values():
        if case.reason is None:
            continue
        with pytest.raises(AudioError) as info:
            load_audio(case.path)
        assert info.value.reason == case.reason, case.name


def test_clipped_audio_is_kept_at_full_scale(cases):
    samples = load_audio(cases["clipped"].path)
    assert np.max(np.abs(samples)) > 0.99


def test_long_file_is_split_into_contiguous_segments_at_pauses(cases, through_manifest):
    outcome = through_manifest[LONG_CASE]
    utts = [u for u, _ in outcome]
    assert len(utts) >= LONG_SECONDS / MAX_SEGMENT_S
    assert utts[0].offset == 0.0
    assert math.isclose(utts[-1].offset + utts[-1].duration, LONG_SECONDS, abs_tol=1e-6)
    for a, b in zip(utts[:-1], utts[1:], strict=True):
        assert math.isclose(a.offset + a.duration, b.offset, abs_tol=1e-6)
    for u in utts:
        assert u.id == f"{LONG_CASE}@{u.offset:.2f}"
        assert u.text is None
        assert 1.0 <= u.duration <= MAX_SEGMENT_S
    for u in utts[1:]:  # every cut falls in a pause: [P - pause, P) of its period
        assert u.offset % LONG_PERIOD_S >= LONG_PERIOD_S - LONG_PAUSE_S - 0.02, u.offset


def test_audio_info_reads_header(cases):
    duration, rate, channels = audio_info(cases["44k1_stereo"].path)
    assert (rate, channels) == (44100, 2)
    assert duration == pytest.approx(1.5)
    assert audio_info(cases["6_channels"].path)[1:] == (48000, 6)
    for name, reason in [("missing", "missing"), ("directory", "not_a_file"), ("empty_file", "empty_file")]:
        with pytest.raises(AudioError) as info:
            audio_info(cases[name].path)
        assert info.value.reason == reason
    with pytest.raises(AudioError) as info:
        audio_info(cases["random_bytes_wav"].path)
    assert info.value.reason == "unreadable"


@pytest.mark.parametrize(("rate", "channels", "seconds"), [(8000, 1, 2.0), (44100, 2, 1.5), (48000, 6, 0.7)])
def test_resample_and_mix_give_16k_mono_float32(tmp_path, rate, channels, seconds):
    rng = np.random.default_rng(RNG_SEED)
    data = np.stack([speechlike(seconds, rate, rng) for _ in range(channels)], axis=1)
    path = tmp_path / f"x{rate}.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - round(seconds * SAMPLE_RATE)) <= 1


def test_channels_are_averaged(tmp_path):
    mono = speechlike(1.0, SAMPLE_RATE, np.random.default_rng(RNG_SEED))
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.75 * mono, atol=1e-6)


def test_opposite_channels_cancel_to_silence(tmp_path):
    mono = speechlike(1.0, SAMPLE_RATE, np.random.default_rng(RNG_SEED))
    path = tmp_path / "phase.wav"
    sf.write(path, np.stack([mono, -mono], axis=1), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == "silent"


@pytest.fixture()
def ramp_file(tmp_path):
    """10 s whose sample values encode their own position, to check offset/duration reads."""
    n = 10 * SAMPLE_RATE
    path = tmp_path / "ramp.wav"
    sf.write(path, (np.arange(n) / n * 0.9 + 0.05).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return path, n


def test_offset_and_duration_read_the_right_frames(ramp_file):
    path, n = ramp_file
    samples = load_audio(path, offset=2.5, duration=1.25)
    expected = (np.arange(n) / n * 0.9 + 0.05).astype(np.float32)[40000:60000]
    np.testing.assert_array_equal(samples, expected)
    assert len(load_audio(path, offset=9.0)) == SAMPLE_RATE
    assert len(load_audio(path, offset=9.0, duration=1.1)) == SAMPLE_RATE  # rounding tolerance: clipped


@pytest.mark.parametrize(
    ("offset", "duration"), [(10.0, None), (12.0, 1.0), (-1.0, 1.0), (0.0, -2.0), (9.0, 5.0), (math.nan, 1.0)]
)
def test_ranges_outside_the_file_are_bad_range(ramp_file, offset, duration):
    with pytest.raises(AudioError) as info:
        load_audio(ramp_file[0], offset=offset, duration=duration)
    assert info.value.reason == "bad_range"


def test_utterance_with_bad_range_becomes_skip(ramp_file):
    utt = Utterance(id="r", audio_filepath=str(ramp_file[0]), duration=3.0, offset=8.5)
    (skip,) = iter_segments(utt)
    assert isinstance(skip, Skip) and skip.reason == "bad_range" and skip.offset == 8.5


def _with_pauses(rng, pauses: list[tuple[float, float]], total_s: float) -> np.ndarray:
    audio = speechlike(total_s, SAMPLE_RATE, rng)
    for a, b in pauses:
        audio[round(a * SAMPLE_RATE) : round(b * SAMPLE_RATE)] = 0.0
    return audio


def _assert_covering(pieces, total_s, max_s):
    assert pieces[0][0] == 0.0 and pieces[-1][1] == pytest.approx(total_s)
    for (_, end), (start, _) in zip(pieces[:-1], pieces[1:], strict=True):
        assert end == start
    assert all(0 < b - a <= max_s + 1e-9 for a, b in pieces)


def test_split_cuts_inside_known_pauses():
    pauses = [(13.0, 13.4), (24.0, 24.4), (51.2, 51.6), (77.0, 77.5)]
    audio = _with_pauses(np.random.default_rng(RNG_SEED), pauses, 95.0)
    pieces = split_at_pauses(audio)
    _assert_covering(pieces, 95.0, MAX_SEGMENT_S)
    cuts = [a for a, _ in pieces[1:]]
    assert len(cuts) == 3
    for cut, (a, b) in zip(cuts, pauses[1:], strict=True):
        assert a + 0.1 <= cut <= b - 0.1, (cut, a, b)  # well inside the pause, not at its edge


def test_split_prefers_a_pause_over_a_quiet_frame_in_a_word():
    rng = np.random.default_rng(RNG_SEED)
    audio = _with_pauses(rng, [(22.0, 22.3)], 40.0)
    audio[round(27.5 * SAMPLE_RATE) : round(27.52 * SAMPLE_RATE)] = 0.0  # 20 ms closure, not a pause
    (first, _), (cut, _) = split_at_pauses(audio)
    assert 22.0 <= cut <= 22.3


def test_split_without_pauses_still_respects_max_and_min():
    audio = speechlike(100.0, SAMPLE_RATE, np.random.default_rng(RNG_SEED))
    pieces = split_at_pauses(audio, max_s=20.0, min_s=2.0)
    _assert_covering(pieces, 100.0, 20.0)
    assert all(b - a >= 2.0 for a, b in pieces)


def test_split_leaves_no_tiny_last_piece():
    audio = speechlike(30.5, SAMPLE_RATE, np.random.default_rng(RNG_SEED))
    pieces = split_at_pauses(audio)
    assert len(pieces) == 2 and pieces[-1][1] - pieces[-1][0] >= 1.0


def test_short_audio_is_one_piece():
    audio = np.ones(30 * SAMPLE_RATE, np.float32)
    assert split_at_pauses(audio) == [(0.0, 30.0)]


@pytest.mark.parametrize(("max_s", "min_s"), [(30.0, 0.0), (30.0, 11.0), (2.0, 1.0)])
def test_split_rejects_bad_limits(max_s, min_s):
    with pytest.raises(ValueError, match="min_s"):
        split_at_pauses(np.zeros(10), max_s=max_s, min_s=min_s)


def test_silent_stretch_in_long_file_is_skipped_alone(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    audio = _with_pauses(rng, [(25.0, 55.0)], 70.0)
    path = tmp_path / "gap.flac"
    sf.write(path, audio, SAMPLE_RATE)
    out = list(iter_segments(Utterance(id="gap", audio_filepath=str(path), duration=70.0)))
    skips = [o for o in out if isinstance(o, Skip)]
    kept = [o[0] for o in out if not isinstance(o, Skip)]
    assert [s.reason for s in skips] == ["silent"]
    assert 25.0 <= skips[0].offset and skips[0].offset + skips[0].duration <= 55.0 + 1e-6
    assert skips[0].id == f"gap@{skips[0].offset:.2f}"
    assert len(kept) == 2
    spans = [(r.offset, r.offset + r.duration) for r in (kept[0], skips[0], kept[1])]
    assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(70.0)
    assert all(math.isclose(a[1], b[0], abs_tol=1e-6) for a, b in zip(spans[:-1], spans[1:], strict=True))


def test_long_utterance_with_offset_names_segments_relative_to_it(tmp_path):
    audio = _with_pauses(np.random.default_rng(RNG_SEED), [(32.0, 32.4)], 50.0)
    path = tmp_path / "talk.wav"
    sf.write(path, audio, SAMPLE_RATE)
    utt = Utterance(id="talk@5.00", audio_filepath=str(path), duration=40.0, offset=5.0, text="ref")
    first, second = (u for u, _ in iter_segments(utt))
    assert first.id == "talk@5.00@0.00" and first.offset == 5.0
    assert second.id == f"talk@5.00@{second.offset - 5.0:.2f}"
    assert 32.0 <= second.offset <= 32.4
    assert second.offset + second.duration == pytest.approx(45.0)
    assert first.text is None and second.text is None


@pytest.fixture()
def short_chunks(monkeypatch):
    """Read long files 60 s at a time, so chunk edges are exercised on small files."""
    monkeypatch.setattr(audio_module, "LONG_CHUNK_S", 60.0)


def _outcome_spans(out) -> list[tuple[str, float, float]]:
    records = [o if isinstance(o, Skip) else o[0] for o in out]
    return [(getattr(r, "reason", "ok"), r.offset, r.offset + r.duration) for r in records]


def test_nan_chunk_in_long_file_is_skipped_alone(tmp_path, short_chunks):
    audio = speechlike(150.0, SAMPLE_RATE, np.random.default_rng(RNG_SEED))
    audio[round(100.0 * SAMPLE_RATE)] = np.nan
    path = tmp_path / "nan_long.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    spans = _outcome_spans(iter_segments(Utterance(id="n", audio_filepath=str(path), duration=150.0)))
    assert [r for r, _, _ in spans].count("non_finite") == 1
    bad = next(s for s in spans if s[0] == "non_finite")
    assert bad[1] <= 100.0 < bad[2]
    assert spans[-1][0] == "ok" and spans[-1][2] == pytest.approx(150.0)
    assert all(math.isclose(a[2], b[1], abs_tol=1e-6) for a, b in zip(spans[:-1], spans[1:], strict=True))


def test_truncated_long_flac_keeps_what_decodes_then_skips_the_rest(tmp_path, short_chunks):
    path = tmp_path / "long.flac"
    sf.write(path, speechlike(150.0, SAMPLE_RATE, np.random.default_rng(RNG_SEED)), SAMPLE_RATE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    spans = _outcome_spans(iter_segments(Utterance(id="t", audio_filepath=str(path), duration=150.0)))
    assert spans[0][0] == "ok" and spans[-1][0] == "unreadable"
    assert [r for r, _, _ in spans].count("unreadable") == 1
    assert spans[-1][2] == pytest.approx(150.0)
