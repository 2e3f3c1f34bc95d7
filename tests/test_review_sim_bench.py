"""benchmarks/review_sim.py: every second opinion is labeled and votes in the filter."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from asr_distill.testing.bench import load_benchmark

rs = load_benchmark("review_sim")


def test_each_opinion_is_labeled_once_and_all_vote_in_the_filter(tmp_path, monkeypatch):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": "a"}) + "\n" for i in range(6)))
    monkeypatch.setitem(rs.POOLS, "an4", pool)
    calls = []
    monkeypatch.setattr(rs, "cli", lambda *argv: calls.append(argv))
    filtered = rs.prepare("an4", 2, tmp_path / "work", 0.6, ("tiny.en", "base:5", "base@0.8/2"))
    d = tmp_path / "work" / "an4"
    assert len((d / "subset.jsonl").read_text().splitlines()) == 3
    labels = [c for c in calls if c[0] == "label"]
    assert [c[c.index("--out") + 1] for c in labels] == [
        str(d / n) for n in ("base.jsonl", "tiny_en.jsonl", "base_beam5.jsonl", "base_t0.8_s2.jsonl")
    ]
    assert labels[2][-2:] == ("--beam-size", "5") and "--beam-size" not in labels[1]
    assert labels[3][-7:] == ("base", "--temperature", "0.8", "--best-of", "1", "--seed", "2")
    (filt,) = [c for c in calls if c[0] == "filter"]
    seconds = [filt[i + 1] for i, a in enumerate(filt) if a == "--second"]
    assert seconds == [
        str(d / "tiny_en.jsonl"),
        str(d / "base_beam5.jsonl"),
        str(d / "base_t0.8_s2.jsonl"),
    ]  # the first is the agreement partner
    assert filtered == d / "filtered_floor0.6_tiny_en+base_beam5+base_t0.8_s2"
    assert (
        rs.prepare("an4", 2, tmp_path / "work", 0.6) == d / "filtered_floor0.6"
    )  # the one-opinion run's folder


def test_calibration_subset_is_disjoint_and_labeled_in_its_own_folder(tmp_path, monkeypatch):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"audio_filepath": f"{i}.wav", "text": "a"}) + "\n" for i in range(45))
    )
    monkeypatch.setitem(rs.POOLS, "an4", pool)
    monkeypatch.setattr(rs, "cli", lambda *argv: None)
    dev = rs.prepare("an4", 20, tmp_path / "work", None, ("tiny.en",), rs.CALIBRATION_OFFSET)
    assert dev == tmp_path / "work" / f"an4_from{rs.CALIBRATION_OFFSET}" / "filtered"
    lines = [json.loads(x)["audio_filepath"] for x in (dev.parent / "subset.jsonl").read_text().splitlines()]
    assert [Path(x).name for x in lines] == ["2.wav", "22.wav", "42.wav"]
    ap = argparse.ArgumentParser()
    rs.check_disjoint(5, 20, 2, ap)  # lines 0, 5, 10, ... against 2, 22, 42, ...
    rs.check_disjoint(5, 20, 3, ap)
    for every, offset in ((2, 2), (5, 10), (5, 45)):
        with pytest.raises(SystemExit):
            rs.check_disjoint(every, 20, offset, ap)  # a line in both
