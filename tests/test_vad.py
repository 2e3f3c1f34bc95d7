"""Long recordings cut by Silero VAD: pieces of at most 30 s, cut in pauses, nothing lost."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import fixture_lines, write_manifest

from asr_distill import audio as audio_module
from asr_distill import vad
from asr_distill.audio import (
    MAX_SEGMENT_S,
    NO_SPEECH,
    SAMPLE_RATE,
    iter_segments,
    load_audio,
    split_at_pauses,
)
from asr_distill.records import Skip, Utterance
from asr_distill.testing.long_form import join_clips

LONG_PAUSE_S = 5.0  # one pause in the recording long enough to be left out
LONG_PAUSE_AT = 13  # before this clip
SNR_DB = 20.0
LEAD_SILENCE_S = 0.25  # every fixture clip starts with at least this much silence

needs_silero = pytest.mark.skipif(
    not vad.silero_available(), reason="silero-vad is not installed (pip install 'asr_distill[vad]')"
)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The 8 fixture clips three times over, 1-2 s pauses (one of 5 s), pink noise at 20 dB SNR."""
    clips = [load_audio(d["audio_filepath"]) for d in fixture_lines()] * 3
    rng = np.random.default_rng(3)
    pauses = rng.uniform(1.0, 2.0, len(clips))
    pauses[LONG_PAUSE_AT] = LONG_PAUSE_S
    joined = join_clips(clips, list(pauses), snr_db=SNR_DB, rng=rng)
    path = tmp_path_factory.mktemp("long_form") / "joined.wav"
    sf.write(path, joined.audio, SAMPLE_RATE, subtype="PCM_16")
    return Utterance(id="rec", audio_filepath=str(path), duration=joined.duration), joined


def _records(out) -> list:
    return [o if isinstance(o, Skip) else o[0] for o in out]


def _check_cover(records, total_s: float) -> None:
    assert records[0].offset == 0.0
    assert records[-1].offset + records[-1].duration == pytest.approx(total_s, abs=1e-3)
    for a, b in zip(records[:-1], records[1:], strict=True):
        assert math.isclose(a.offset + a.duration, b.offset, abs_tol=1e-6)
    for r in records:
        assert r.id == f"rec@{r.offset:.2f}"


# --- merging speech regions into pieces (no model needed) ---------------------------------


@pytest.mark.parametrize(
    ("regions", "total", "expected"),
    [
        ([], 100.0, [(0.0, 100.0, False)]),
        ([(1.0, 5.0), (6.0, 9.0)], 10.0, [(0.0, 10.0, True)]),
        # a pause of 3 s or more is left out, but for 0.5 s beside the speech
        ([(1.0, 5.0), (10.0, 14.0)], 15.0, [(0.0, 5.5, True), (5.5, 9.5, False), (9.5, 15.0, True)]),
        ([(5.0, 8.0)], 20.0, [(0.0, 4.5, False), (4.5, 8.5, True), (8.5, 20.0, False)]),
        # 41 s needs 2 pieces: the cut is in the longest pause that still allows 2 (not 10.0-10.2)
        (
            [(0.5, 10.0), (10.2, 20.0), (21.0, 29.0), (29.3, 40.0)],
            41.0,
            [(0.0, 20.5, True), (20.5, 41.0, True)],
        ),
    ],
    ids=["no_speech", "fits", "long_pause", "silent_edges", "longest_useful_pause"],
)
def test_plan_pieces(regions, total, expected):
    pieces = vad.plan_pieces(regions, total)
    assert [speech for _, _, speech in pieces] == [speech for _, _, speech in expected]
    assert [x for a, b, _ in pieces for x in (a, b)] == pytest.approx(
        [x for a, b, _ in expected for x in (a, b)]
    )


def _random_regions(rng, count: int, lengths: tuple[float, float], pauses: tuple[float, float]):
    """Up to ``count`` speech regions with random lengths and pauses, and where the audio ends."""
    regions, t = [], rng.uniform(0, 4)
    for _ in range(rng.integers(1, count)):
        length = rng.uniform(*lengths)
        regions.append((t, t + length))
        t += length + rng.uniform(*pauses)
    return regions, t


def test_plan_pieces_cut_only_in_pauses_and_cover_everything():
    rng = np.random.default_rng(0)
    for _ in range(50):
        regions, t = _random_regions(rng, 60, (0.3, 8.0), (0.1, 4.0))
        pieces = vad.plan_pieces(regions, t)
        assert pieces[0][0] == 0.0 and pieces[-1][1] == pytest.approx(t)
        assert all(a[1] == b[0] for a, b in zip(pieces[:-1], pieces[1:], strict=True))
        assert all(b - a <= MAX_SEGMENT_S + 1e-9 for a, b, speech in pieces if speech)
        for a, b in regions:  # every region lies wholly in one speech piece
            assert any(p <= a and b <= q for p, q, speech in pieces if speech), (a, b)


@pytest.mark.parametrize(
    ("cut_pause_s", "expected"),
    [
        (None, [(0.0, 12.0, True)]),  # everything fits one window: packed, nothing left out
        # cut in the 2.0 s and 0.6 s pauses; each piece keeps 0.5 s beside its speech and the
        # rest of a pause is left out where that is 0.2 s or more (not in the 0.6 s pause)
        (
            0.5,
            [(0.0, 0.5, False), (0.5, 3.5, True), (3.5, 4.5, False), (4.5, 5.9, True), (5.9, 11.5, True)]
            + [(11.5, 12.0, False)],
        ),
        # only the 2.0 s pause
        (
            0.8,
            [(0.0, 0.5, False), (0.5, 3.5, True), (3.5, 4.5, False), (4.5, 11.5, True), (11.5, 12.0, False)],
        ),
        # no pause is long enough to cut at: one piece, its edges trimmed all the same
        (2.5, [(0.0, 0.5, False), (0.5, 11.5, True), (11.5, 12.0, False)]),
    ],
    ids=["packed", "every_clear_pause", "long_pauses_only", "none_long_enough"],
)
def test_plan_pieces_cut_at_pauses(cut_pause_s, expected):
    regions = [(1.0, 3.0), (5.0, 5.6), (6.2, 9.0), (9.3, 11.0)]  # pauses 2.0, 0.6, 0.3 s
    pieces = vad.plan_pieces(regions, 12.0, cut_pause_s=cut_pause_s)
    assert [speech for _, _, speech in pieces] == [speech for _, _, speech in expected]
    assert [x for a, b, _ in pieces for x in (a, b)] == pytest.approx(
        [x for a, b, _ in expected for x in (a, b)]
    )


def test_plan_pieces_with_pause_cuts_keep_regions_whole_and_under_max():
    rng = np.random.default_rng(1)
    for _ in range(30):
        regions, t = _random_regions(rng, 40, (0.2, 12.0), (0.1, 2.0))
        pieces = vad.plan_pieces(regions, t, max_s=10.0, cut_pause_s=0.5)
        assert all(b - a <= 10.0 + 1e-9 for a, b, speech in pieces if speech)
        assert all(a[1] == pytest.approx(b[0]) for a, b in zip(pieces[:-1], pieces[1:], strict=True))
        # a region under Silero's limit lies wholly in one piece, but at the audio's edges, where
        # up to 3 s of leading or trailing silence joins it (as without pause cuts)
        for a, b in regions[1:-1]:
            if b - a < 10.0 - vad.REGION_SLACK_S:
                assert any(p <= a and b <= q for p, q, speech in pieces if speech), (a, b)
        # no two stretches left out side by side; a speech piece keeps at most the pad (and a
        # remainder under MIN_LEFT_OUT_S) beside the speech it holds
        assert all(x[2] or y[2] for x, y in zip(pieces[:-1], pieces[1:], strict=True))
        for p, q, speech in pieces:
            inside = [r for r in regions if r[1] > p and r[0] < q]
            if speech and inside:
                slack = vad.EDGE_PAD_S + vad.MIN_LEFT_OUT_S + 1e-9
                assert inside[0][0] - p < slack and q - inside[-1][1] < slack, (p, q, inside)


def test_plan_pieces_refuses_bad_limits():
    with pytest.raises(ValueError, match="pad_s"):
        vad.plan_pieces([(0.0, 1.0)], 2.0, no_speech_s=1.0, pad_s=0.5)


# --- the segmenter on real speech ---------------------------------------------------------


@needs_silero
@pytest.mark.parametrize("chunk_s", [audio_module.LONG_CHUNK_S, 40.0], ids=["one_chunk", "40s_chunks"])
def test_silero_cuts_in_known_pauses_and_loses_nothing(recording, chunk_s, monkeypatch):
    monkeypatch.setattr(audio_module, "LONG_CHUNK_S", chunk_s)  # 40 s: chunk edges fall in speech
    utt, joined = recording
    records = _records(iter_segments(utt, "silero", cut_pause_s=math.inf))  # packed up to 30 s
    _check_cover(records, joined.duration)
    segments = [r for r in records if not isinstance(r, Skip)]
    skips = [r for r in records if isinstance(r, Skip)]
    assert all(r.duration <= MAX_SEGMENT_S + 1e-6 for r in segments)
    assert len(segments) <= math.ceil(joined.duration / MAX_SEGMENT_S) + 2
    # the only stretch left out is inside the 5 s pause (or the next clip's leading silence)
    gap = (joined.spans[LONG_PAUSE_AT - 1][1], joined.spans[LONG_PAUSE_AT][0] + LEAD_SILENCE_S)
    assert [s.reason for s in skips] == [NO_SPEECH]
    assert gap[0] <= skips[0].offset and skips[0].offset + skips[0].duration <= gap[1]
    # every cut is in an inserted pause, so every clip's speech lies whole in one segment
    pairs = list(zip(joined.spans[:-1], joined.spans[1:], strict=True))
    for r in records[1:]:
        assert any(a[1] < r.offset < b[0] + LEAD_SILENCE_S for a, b in pairs), r.offset
    for start, end in joined.spans:
        start += LEAD_SILENCE_S
        assert any(s.offset <= start and end <= s.offset + s.duration for s in segments), (start, end)


@needs_silero
def test_silero_by_default_gives_each_clip_its_own_segment(recording):
    utt, joined = recording  # every inserted pause is 1 s or more: over the 0.5 s default cut
    segments = [r for r in _records(iter_segments(utt, "silero")) if not isinstance(r, Skip)]
    assert len(segments) == len(joined.spans)
    for (start, end), seg in zip(joined.spans, segments, strict=True):
        assert seg.offset <= start + LEAD_SILENCE_S and end <= seg.offset + seg.duration, (start, end, seg)


def test_energy_is_the_default_and_unchanged(recording):
    utt, joined = recording
    default = _records(iter_segments(utt))
    assert [(r.id, r.duration) for r in default] == [
        (r.id, r.duration) for r in _records(iter_segments(utt, "energy"))
    ]
    pieces = split_at_pauses(load_audio(utt.audio_filepath))
    spans = [x for r in default for x in (r.offset, r.offset + r.duration)]
    assert spans == pytest.approx([x for piece in pieces for x in piece])
    assert not any(isinstance(r, Skip) for r in default)


def test_unknown_segmenter_is_refused(recording):
    with pytest.raises(ValueError, match="segmenter"):
        list(iter_segments(recording[0], "webrtc"))


@pytest.mark.parametrize(
    "segmenter", ["energy", pytest.param("silero", marks=needs_silero)], ids=["energy", "silero"]
)
def test_shorter_segments_still_cut_in_pauses_and_cover_everything(recording, segmenter):
    utt, joined = recording
    packed = math.inf if segmenter == "silero" else None
    records = _records(iter_segments(utt, segmenter, max_s=10.0, cut_pause_s=packed))
    _check_cover(records, joined.duration)
    segments = [r for r in records if not isinstance(r, Skip)]
    assert all(r.duration <= 10.0 + 1e-6 for r in segments)
    at_30s = [
        r for r in _records(iter_segments(utt, segmenter, cut_pause_s=packed)) if not isinstance(r, Skip)
    ]
    assert len(segments) > len(at_30s)
    if segmenter == "silero":  # every cut still falls in an inserted pause
        pairs = list(zip(joined.spans[:-1], joined.spans[1:], strict=True))
        for r in records[1:]:
            assert any(a[1] < r.offset < b[0] + LEAD_SILENCE_S for a, b in pairs), r.offset


@pytest.mark.parametrize(
    ("max_s", "cut", "segmenter"),
    [(2.0, None, "energy"), (31.0, None, "energy"), (30.0, 0.5, "energy"), (30.0, 0.0, "silero")],
)
def test_segment_length_out_of_range_is_refused(recording, max_s, cut, segmenter):
    from asr_distill.label import LabelRun
    from asr_distill.pipeline.config import LabelConfig

    for make in (
        lambda: list(iter_segments(recording[0], segmenter, max_s, cut)),
        lambda: LabelRun("tiny.en", segmenter=segmenter, segment_s=max_s, cut_pause_s=cut),
        lambda: LabelConfig(segmenter=segmenter, segment_s=max_s, cut_pause_s=cut),
    ):
        with pytest.raises(ValueError, match="longest segment|pause cut"):
            make()


def test_missing_extra_is_named(recording, monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # what an environment without it raises
    vad._model.cache_clear()
    with pytest.raises(ImportError, match=r"pip install 'asr_distill\[vad\]'"):
        list(iter_segments(recording[0], "silero"))
    with pytest.raises(ImportError, match="vad extra"):
        vad.load_vad()
    vad._model.cache_clear()


@needs_silero
def test_loading_silero_keeps_torch_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)  # so the import runs again, as in a fresh process
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vad._import_silero()  # silero_vad's own import sets torch to one thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@needs_silero
@pytest.mark.slow
def test_label_with_silero_segmenter(recording, tiny_teacher, tmp_path):
    from asr_distill.label import LabelRun, label
    from asr_distill.metrics import word_error_rate

    utt, joined = recording
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"id": utt.id, "audio_filepath": utt.audio_filepath, "duration": utt.duration}]
    )
    records = list(label(manifest, LabelRun(tiny_teacher, batch_size=4, segmenter="silero")))
    expected = [r.id for r in _records(iter_segments(utt, "silero"))]
    assert sorted(r.id for r in records) == sorted(expected)
    # the 5 s pause, and the rest of each pause a segment does not keep beside its speech
    assert {r.reason for r in records if isinstance(r, Skip)} == {NO_SPEECH}
    labels = sorted((r for r in records if not isinstance(r, Skip)), key=lambda r: r.offset)
    refs = " ".join(d["text"] for d in fixture_lines())
    hyp = " ".join(r.text for r in labels)
    result = word_error_rate([" ".join([refs] * 3)], [hyp])
    assert result.wer < 25.0, (result, hyp)
