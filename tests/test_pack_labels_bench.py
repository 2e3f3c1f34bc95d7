"""benchmarks/pack_labels.py: the pool subset keeps whole speakers, and the comparison is paired."""

from __future__ import annotations

import json

from asr_distill.evaluate.scoring import score_utterances
from asr_distill.testing.bench import load_benchmark

pl = load_benchmark("pack_labels")


def test_a_missing_manifest_is_skipped_by_name_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "pack.json"
    missing = tmp_path / "speechocean762" / "pool.jsonl"
    assert pl.main(["--manifest", str(missing), "--out", str(out), "--work", str(tmp_path / "w")]) == 0
    said = capsys.readouterr().out
    assert said.startswith("skipped:") and str(missing) in said
    assert not out.exists() and not (tmp_path / "w").exists()


def test_the_subset_keeps_every_nth_speaker_whole_with_absolute_paths(tmp_path):
    rows = [
        {"audio_filepath": f"audio/{s}/{k}.flac", "duration": 1.0, "text": "t", "speaker": s}
        for s in ("0003", "0001", "0002", "0004")
        for k in range(3)
    ]
    manifest = tmp_path / "pool.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = pl.subset(manifest, 2, tmp_path / "w" / "pool.jsonl")
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["speaker"] for r in kept] == ["0003"] * 3 + ["0001"] * 3  # sorted speakers 1 and 3, order kept
    assert all(
        r["audio_filepath"] == str(tmp_path / "audio" / r["speaker"] / f"{k % 3}.flac")
        for k, r in enumerate(kept)
    )


def test_the_comparison_pairs_utterances_and_counts_where_packing_helped():
    refs = ["a b c d", "e f g h", "i j k l"]
    alone = score_utterances(refs, ["a x c d", "e f g h", "x x x l"], ids=["1", "2", "3"])
    packed = score_utterances(refs, ["a b c d", "e f x h", "i j k l"], ids=["1", "2", "3"])
    c = pl.compare(alone, packed)
    assert c["wer_alone"] == round(100 * 4 / 12, 4) and c["wer_packed"] == round(100 * 1 / 12, 4)
    assert c["delta"] == round(100 * (1 - 4) / 12, 4) and c["utterances"] == 3
    assert (c["utterances_better"], c["utterances_worse"]) == (2, 1)
    assert c["delta_ci"][0] <= c["delta"] <= c["delta_ci"][1]
