"""benchmarks/self_agreement.py: the inaudible changes are what they claim; agreement is per id."""

from __future__ import annotations

import json

import numpy as np

from asr_distill.testing.bench import load_benchmark

sa = load_benchmark("self_agreement")


def _tone(n: int = 16000) -> np.ndarray:
    t = np.arange(n) / 16000
    return (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_the_shift_prepends_silence_and_keeps_every_sample():
    x = _tone()
    y = sa.PERTURB["shift_5ms"](x, "u1")
    assert len(y) == len(x) + sa.SHIFT_SAMPLES == len(x) + 80
    assert not y[: sa.SHIFT_SAMPLES].any()
    assert np.array_equal(y[sa.SHIFT_SAMPLES :], x)


def test_the_noise_sits_60_db_under_the_clip_and_is_the_same_for_the_same_id():
    x = _tone()
    y1, y2, other = (sa.PERTURB["noise_60db"](x, u) for u in ("u1", "u1", "u2"))
    assert np.array_equal(y1, y2) and not np.array_equal(y1, other)
    level = 20 * np.log10(np.sqrt(np.mean((y1 - x) ** 2)) / np.sqrt(np.mean(x**2)))
    assert abs(level + sa.NOISE_DB) < 0.5


def _labels(path, texts):
    rows = [
        {"id": f"u{i}", "text": t, "ref_text": r, "duration": 1.0}
        for i, (t, r) in enumerate(zip(texts, ["the cat sat", "a dog ran", "we go home"], strict=True))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_agreement_with_the_reference_counts_utterances_whose_normalised_text_differs(tmp_path):
    paths = {
        sa.REFERENCE: _labels(tmp_path / "ref.jsonl", ["The cat sat.", "a dog ran", "we go home"]),
        "shift_5ms": _labels(tmp_path / "shift.jsonl", ["the cat sat", "a dog ran", "we go hum"]),
    }
    out = sa.compare(paths, {name: {} for name in paths}, sa.REFERENCE)
    a = out["agreement"]["shift_5ms"]
    assert (a["same"], a["utterances"]) == (2, 3) and abs(a["fraction"] - 2 / 3) < 1e-4
    assert [e["id"] for e in out["examples"]["shift_5ms"]] == ["u2"]
    assert out["wer"][sa.REFERENCE]["format_insensitive"] == 0.0
    assert out["wer"]["shift_5ms"]["format_insensitive"] == round(100 / 9, 2)


def test_a_difference_counts_as_greedy_only_when_neither_decoding_fell_back():
    def labels(rows):
        return {i: {"id": i, "temperature": t} for i, t in rows}

    loaded = {
        sa.REFERENCE: labels([("a", 0.0), ("b", 0.0), ("c", 0.4)]),
        "batch_4": labels([("a", 0.0), ("b", 0.2), ("c", 0.0)]),
    }
    assert sa._both_greedy(loaded, {"batch_4": {"differing": ["a", "b", "c"]}}) == {"batch_4": 1}


def test_perturbed_audio_goes_to_its_own_manifest_and_the_source_is_left_alone(tmp_path):
    from asr_distill.audio import load_audio, write_wav

    write_wav(tmp_path / "a.wav", _tone())
    src = tmp_path / "set.first-all.jsonl"
    src.write_text(
        json.dumps({"id": "u1", "audio_filepath": str(tmp_path / "a.wav"), "duration": 1.0}) + "\n"
    )
    before = src.read_text()
    out = sa.perturbed(src, "shift_5ms")
    assert src.read_text() == before
    assert out.name == "set.first-all.shift_5ms.jsonl"
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["id"] == "u1" and len(load_audio(line["audio_filepath"])) == 16000 + sa.SHIFT_SAMPLES
