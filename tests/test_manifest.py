"""Reading and building NeMo-style manifests: bad lines become skips, good lines still come through."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bad_inputs import speechlike

from asr_distill.audio import SAMPLE_RATE, iter_audio, load_audio
from asr_distill.manifest import (
    build_manifest,
    parse_shard,
    read_manifest,
    shard_filter,
    write_folder_manifest,
)
from asr_distill.records import Skip, Utterance

FIXTURE = Path(__file__).parent / "fixtures" / "an4" / "manifest.jsonl"
RNG_SEED = 11


def _audio(path: Path, seconds: float = 1.0, rate: int = SAMPLE_RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speechlike(seconds, rate, np.random.default_rng(RNG_SEED)), rate)
    return path


def _manifest(path: Path, lines: list) -> Path:
    """Write raw lines: dicts as JSON, strings verbatim (to write broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    return path


def test_an4_fixture_yields_eight_loadable_utterances():
    records = list(read_manifest(FIXTURE))
    assert len(records) == 8
    assert all(isinstance(r, Utterance) for r in records)
    assert records[0].id == "audio/an406-fcaw-b"
    assert records[0].text == "rubout g m e f three nine" and records[0].speaker == "fcaw"
    for r in records:
        assert os.path.isabs(r.audio_filepath)
        samples = load_audio(r.audio_filepath, r.offset, r.duration)
        assert abs(len(samples) - r.duration * SAMPLE_RATE) <= 1


def test_an4_fixture_through_iter_audio_keeps_ids_and_text():
    out = list(iter_audio(read_manifest(FIXTURE)))
    assert len(out) == 8 and not any(isinstance(o, Skip) for o in out)
    assert all(u.text for u, _ in out)


def test_relative_paths_resolve_against_manifest_folder(tmp_path):
    _audio(tmp_path / "data" / "a" / "x.wav")
    _audio(tmp_path / "outside.flac")
    absolute = _audio(tmp_path / "elsewhere" / "abs.wav")
    manifest = _manifest(
        tmp_path / "data" / "m.jsonl",
        [
            {"audio_filepath": "a/x.wav", "duration": 1.0},
            {"audio_filepath": "../outside.flac", "duration": 1.0},
            {"audio_filepath": str(absolute), "duration": 1.0},
        ],
    )
    x, outside, abs_ = read_manifest(manifest)
    assert x.audio_filepath == str(tmp_path / "data" / "a" / "x.wav") and x.id == "a/x"
    assert outside.audio_filepath == str(tmp_path / "outside.flac")
    assert outside.id == (tmp_path / "outside").as_posix()
    assert abs_.id == (tmp_path / "elsewhere" / "abs").as_posix()


def test_ids_from_line_or_path_with_offset(tmp_path):
    _audio(tmp_path / "long.wav", seconds=5.0)
    manifest = _manifest(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 1.5},
            {"audio_filepath": "long.wav", "duration": 1.0, "offset": 3},
            {"audio_filepath": "long.wav", "duration": 1.0, "id": "mine", "speaker": 42},
            {"audio_filepath": "long.wav", "duration": 1.0},
        ],
    )
    records = list(read_manifest(manifest))
    assert [r.id for r in records] == ["long@1.50", "long@3.00", "mine", "long"]
    assert records[2].speaker == "42"
    assert records[0].offset == 1.5 and isinstance(records[1].offset, float)


LINE2 = "m.jsonl:line2"  # the id of a line that names no usable audio path
BROKEN_LINES = [  # name, line, field named in the message, expected skip id
    ("not_json", '{"audio_filepath": "ok.wav", "duration": 1.0', "not valid JSON", LINE2),
    ("array", '["ok.wav", 1.0]', "JSON object", LINE2),
    ("no_path", {"duration": 1.0, "text": "hi"}, "audio_filepath", LINE2),
    ("empty_path", {"audio_filepath": " ", "duration": 1.0}, "audio_filepath", LINE2),
    ("path_number", {"audio_filepath": 3, "duration": 1.0}, "audio_filepath", LINE2),
    ("duration_text", {"audio_filepath": "ok.wav", "duration": "abc"}, "duration", "ok"),
    ("duration_negative", {"audio_filepath": "ok.wav", "duration": -1}, "duration", "ok"),
    ("duration_nan", '{"audio_filepath": "ok.wav", "duration": NaN}', "duration", "ok"),
    ("duration_bool", {"audio_filepath": "ok.wav", "duration": True}, "duration", "ok"),
    ("offset_negative", {"audio_filepath": "ok.wav", "duration": 1.0, "offset": -2}, "offset", "ok"),
    ("offset_text", {"audio_filepath": "ok.wav", "duration": 1.0, "offset": "x"}, "offset", "ok"),
    ("text_number", {"audio_filepath": "ok.wav", "duration": 1.0, "text": 5}, "text", "ok"),
    ("id_list", {"audio_filepath": "ok.wav", "duration": 1.0, "id": ["a"]}, "id", "ok"),
]


@pytest.mark.parametrize(("name", "line", "field", "skip_id"), BROKEN_LINES, ids=[b[0] for b in BROKEN_LINES])
def test_broken_line_is_skipped_and_good_lines_survive(tmp_path, name, line, field, skip_id):
    _audio(tmp_path / "ok.wav")
    _audio(tmp_path / "good.wav")
    good = [{"audio_filepath": "good.wav", "duration": 1.0}, {"audio_filepath": "good.wav", "id": "g2"}]
    manifest = _manifest(tmp_path / "m.jsonl", [good[0], line, good[1]])
    first, skip, last = read_manifest(manifest)
    assert isinstance(first, Utterance) and first.id == "good"
    assert isinstance(last, Utterance) and last.id == "g2" and last.duration == pytest.approx(1.0)
    assert isinstance(skip, Skip) and skip.reason == "bad_manifest_line"
    assert "m.jsonl line 2" in skip.message and field in skip.message
    assert skip.id == skip_id
    if skip_id == "ok":
        assert skip.audio_filepath == str(tmp_path / "ok.wav")


def test_blank_lines_are_ignored(tmp_path):
    _audio(tmp_path / "ok.wav")
    manifest = _manifest(tmp_path / "m.jsonl", ["", {"audio_filepath": "ok.wav", "duration": 1.0}, "   "])
    assert [r.id for r in read_manifest(manifest)] == ["ok"]


def test_duplicate_ids_keep_the_first(tmp_path):
    _audio(tmp_path / "ok.wav")
    _audio(tmp_path / "other.wav")
    manifest = _manifest(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "ok.wav", "duration": 1.0, "text": "first"},
            {"audio_filepath": "ok.wav", "duration": 1.0, "text": "second"},
            {"audio_filepath": "other.wav", "duration": 1.0, "id": "ok"},
            {"audio_filepath": "ok.wav", "duration": 0.5, "offset": 0.5},
        ],
    )
    first, dup, dup_id, offset = read_manifest(manifest)
    assert isinstance(first, Utterance) and first.text == "first"
    for dup_record in (dup, dup_id):
        assert isinstance(dup_record, Skip) and dup_record.reason == "duplicate_id" and dup_record.id == "ok"
        assert "line 1" in dup_record.message
    assert isinstance(offset, Utterance) and offset.id == "ok@0.50"


def test_missing_duration_comes_from_header_or_becomes_skip(tmp_path):
    _audio(tmp_path / "ok.flac", seconds=2.0, rate=8000)
    manifest = _manifest(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "ok.flac"},
            {"audio_filepath": "ok.flac", "offset": 0.5},
            {"audio_filepath": "ok.flac", "offset": 3.0},
            {"audio_filepath": "gone.wav", "text": "x"},
        ],
    )
    whole, tail, past, gone = read_manifest(manifest)
    assert whole.duration == pytest.approx(2.0) and tail.duration == pytest.approx(1.5)
    assert isinstance(past, Skip) and past.reason == "bad_range"
    assert isinstance(gone, Skip) and gone.reason == "missing" and gone.id == "gone"


def test_missing_manifest_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        next(read_manifest(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize(("spec", "expected"), [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["4/4", "1/0", "0/0", "-1/3", "1", "a/b", "1/2/3", ""])
def test_parse_shard_rejects(spec):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


def test_shard_filter_partitions_indices():
    shards = [parse_shard(f"{i}/3") for i in range(3)]
    parts = [{k for k in range(100) if shard_filter(k, s)} for s in shards]
    assert set().union(*parts) == set(range(100))
    assert sum(len(p) for p in parts) == 100
    assert all(shard_filter(k, None) for k in range(5))


def test_sharded_manifest_union_is_whole_and_disjoint(tmp_path):
    _audio(tmp_path / "a.wav")
    lines = [{"audio_filepath": "a.wav", "duration": 1.0, "id": f"u{k}"} for k in range(20)]
    lines[7] = "{broken"
    lines[12] = {"audio_filepath": "a.wav", "duration": 1.0, "id": "u3"}  # duplicate across shards
    manifest = _manifest(tmp_path / "m.jsonl", lines)
    whole = [(type(r).__name__, r.id, getattr(r, "reason", None)) for r in read_manifest(manifest)]
    parts = [
        [(type(r).__name__, r.id, getattr(r, "reason", None)) for r in read_manifest(manifest, shard=(i, 4))]
        for i in range(4)
    ]
    assert sorted(sum(parts, [])) == sorted(whole)
    assert sum(len(p) for p in parts) == len(whole) == 20
    assert ("Skip", "u3", "duplicate_id") in parts[0]  # line 13 -> index 12 -> shard 0


def test_build_manifest_walks_sorted_and_reports_unreadable(tmp_path):
    root = tmp_path / "corpus"
    _audio(root / "b" / "two.flac", seconds=1.25)
    _audio(root / "a" / "one.wav", seconds=2.0, rate=8000)
    _audio(root / "a" / "Z.ogg", seconds=1.0)
    (root / "a" / "notes.txt").write_text("not audio")
    (root / "a" / "broken.wav").write_bytes(b"RIFF....")
    (root / "a" / "empty.flac").write_bytes(b"")
    records = list(build_manifest(root))
    assert [x.audio_filepath for x in records] == [
        "a/Z.ogg",
        "a/broken.wav",
        "a/empty.flac",
        "a/one.wav",
        "b/two.flac",
    ]
    by_path = {x.audio_filepath: x for x in records}
    assert by_path["a/one.wav"] == Utterance("a/one", "a/one.wav", 2.0)
    assert by_path["b/two.flac"].duration == 1.25
    assert isinstance(by_path["a/broken.wav"], Skip) and by_path["a/broken.wav"].reason == "unreadable"
    assert isinstance(by_path["a/empty.flac"], Skip) and by_path["a/empty.flac"].reason == "empty_file"
    assert all(x.message for x in records if isinstance(x, Skip))

    written, skipped = write_folder_manifest(root, root / "manifest.jsonl")
    assert [u.id for u in written] == ["a/Z", "a/one", "b/two"] and len(skipped) == 2
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    assert lines[1] == {"audio_filepath": str((root / "a" / "one.wav").resolve()), "duration": 2.0}
    records = list(read_manifest(root / "manifest.jsonl"))
    assert [r.id for r in records] == [u.id for u in written]  # the ids read_manifest gives them
    assert all(isinstance(r, Utterance) and os.path.exists(r.audio_filepath) for r in records)


def test_build_manifest_extension_filter_and_bad_root(tmp_path):
    _audio(tmp_path / "x.wav")
    _audio(tmp_path / "y.flac")
    assert [x.audio_filepath for x in build_manifest(tmp_path, extensions=(".FLAC",))] == ["y.flac"]
    with pytest.raises(NotADirectoryError):
        next(build_manifest(tmp_path / "x.wav"))
