"""benchmarks/long_form.py: recordings keep each utterance's place, and rows compare pairwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from asr_distill.audio import load_audio
from asr_distill.manifest import read_manifest
from asr_distill.records import Utterance
from asr_distill.testing.bench import load_benchmark

lf = load_benchmark("long_form")
FIXTURE = Path(__file__).parent / "fixtures" / "an4" / "manifest.jsonl"


def test_a_missing_manifest_is_skipped_by_name_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "long.json"
    missing = tmp_path / "speechocean762" / "test.jsonl"
    monkeypatch.setattr(sys, "argv", ["long_form.py", "--manifest", str(missing), "--out", str(out)])
    lf.main()
    said = capsys.readouterr().out
    assert said.startswith("skipped: speechocean762 test not found") and str(missing) in said
    assert not out.exists()


def test_recordings_built_from_a_manifest_hold_each_utterance_at_its_recorded_span(tmp_path):
    utts = [u for u in read_manifest(FIXTURE) if isinstance(u, Utterance)][:4]
    args = argparse.Namespace(recordings=2, pause_s=(0.3, 0.6), snr_db=60.0)
    recordings, lines = lf.build(args, utts, seed=0, work=tmp_path)
    assert [r["id"] for r in recordings] == ["rec0", "rec1"]
    assert [d["id"] for d in lines] == [u.id for u in utts]
    for u, d in zip(utts, lines, strict=True):
        rec = next(r for r in recordings if r["id"] == d["recording"])
        assert 0 <= d["offset"] and d["offset"] + d["duration"] <= rec["duration"] + 1e-6
        assert d["duration"] == pytest.approx(u.duration, abs=0.01)
        # at 60 dB SNR the span cut back out of the recording is the clip itself
        clip = load_audio(u.audio_filepath, u.offset, u.duration)
        span = load_audio(d["audio_filepath"], d["offset"], d["duration"])
        n = min(len(clip), len(span))
        assert abs(len(clip) - len(span)) <= 16
        assert float(((clip[:n] - span[:n]) ** 2).mean()) < 1e-3 * float((clip[:n] ** 2).mean())


def _errors(subs: list[int], hyp: str = "x") -> dict:
    return {
        f"u{i}": {"substitutions": s, "deletions": 0, "insertions": 0, "ref_words": 4, "hyp": [hyp]}
        for i, s in enumerate(subs)
    }


def test_compare_pairs_utterances_over_constructions_and_names_the_largest_differences():
    lines = [{"id": f"u{i}", "text": "a b c d"} for i in range(30)]
    # "a" makes one error fewer than "b" on every utterance in each of two constructions
    seeds = [{"a": _errors([0] * 30, "A"), "b": _errors([1] * 30, "B")} for _ in range(2)]
    for seed in seeds:  # but four errors on u3, where "b" makes one
        seed["a"]["u3"]["substitutions"] = 4
    cmp = lf.compare(seeds, "a", "b", lines, top=2)
    assert cmp["delta"] == pytest.approx(100 * (8 - 60) / 240, abs=1e-3)
    assert cmp["delta_ci"][1] < 0 and cmp["p_not_better"] < 0.05
    assert (cmp["utterances_worse"], cmp["utterances_better"]) == (1, 29)
    assert (cmp["errors_added"], cmp["errors_removed"]) == (6, 58)
    assert cmp["largest"][0]["id"] == "u3" and cmp["largest"][0]["errors_minus"] == 6
    assert cmp["largest"][0]["a"] == ["A", "A"] and cmp["largest"][0]["b"] == ["B", "B"]


def test_a_shifted_span_starts_earlier_or_later_and_ends_where_it_ended():
    lines = [
        {"id": "a", "recording": "rec0", "offset": 0.002, "duration": 1.0},
        {"id": "b", "recording": "rec0", "offset": 2.5, "duration": 0.8},
    ]
    earlier = lf.shifted(lines, 5)
    assert [d["offset"] for d in earlier] == pytest.approx([0.0, 2.495])  # no span before the recording
    assert [d["offset"] + d["duration"] for d in earlier] == pytest.approx([1.002, 3.3])
    later = lf.shifted(lines, -5)
    assert [d["offset"] for d in later] == pytest.approx([0.007, 2.505])
    assert [d["duration"] for d in later] == pytest.approx([0.995, 0.795])
    assert lines[0]["offset"] == 0.002  # the utterances' own spans are left as they were
