"""benchmarks/label_quality.py: each pool is filtered the way its recipe filters it."""

from __future__ import annotations

import dataclasses

from asr_distill.testing.bench import load_benchmark
from asr_distill.testing.labels import make_label, write_labels

lq = load_benchmark("label_quality")


def test_pools_take_their_recipes_filter():
    support, source = lq.recipe_filter("support")
    assert source == "recipes/support/config_small.yaml"
    assert "Glimmerstone" in " ".join(support.correction.lexicon)
    assert support.correction.normaliser == "none"
    speech, _ = lq.recipe_filter("speechocean762")
    assert speech.correction.lexicon == () and speech.correction.normaliser == "none"


def test_pool_figures_split_the_lexicons_share_from_the_filters(tmp_path):
    """A name both models mishear is fixed by the lexicon, not dropped: the figures say which did it."""
    ref = "my glimmerstone lamp broke"
    labels = [make_label("my glimerstone lamp broke", id=f"n{i}", ref_text=ref) for i in range(4)]
    labels += [make_label("my glimmerstone lamp broke", id=f"g{i}", ref_text=ref) for i in range(4)]
    labels += [make_label("my lamp spoke", id=f"b{i}", ref_text=ref) for i in range(2)]
    second = [dataclasses.replace(lab, text=lab.text.replace("glimerstone", "glimmerstom")) for lab in labels]
    second = [dataclasses.replace(s, text="my lamp broke") if s.id.startswith("b") else s for s in second]
    write_labels(tmp_path / "labels.jsonl", labels)
    write_labels(tmp_path / "second.jsonl", second)
    support, _ = lq.recipe_filter("support")
    out = lq.pool_figures(tmp_path / "labels.jsonl", tmp_path / "second.jsonl", support)
    assert out["wer_all"] > out["wer_all_corrected"]  # the lexicon fixed the four misheard names
    assert out["wer_kept"] == 0.0 and out["retention"] == 0.8  # the two wrong labels dropped
    plain = out["without_lexicon"]
    assert plain["wer_all_corrected"] == out["wer_all"]  # nothing else to correct here
    assert plain["retention"] < out["retention"]  # raw disagreement on the name drops good audio
    assert set(out["keep_0.6"]) >= {"wer_kept", "retention", "score", "threshold"}


def test_pools_bar_checks_every_reference_free_choice():
    pool = {
        "wer_all": 10.0,
        "wer_all_corrected": 8.0,
        "wer_kept": 4.0,
        "retention": 0.62,
        "keep_0.6": {"wer_kept": 6.0, "retention": 0.6},
        "keep_0.7": {"wer_kept": 4.5, "retention": 0.55},
    }
    bar = lq.pools_bar({"support": pool, "speechocean762": {"skipped": "absent"}})
    assert set(bar) == {"support"}  # a skipped pool has no figures to check
    rows = bar["support"]["choices"]
    assert rows["default"] == {"ratio": 0.4, "retention": 0.62, "met": True, "ratio_corrected": 0.5}
    assert rows["keep_0.6"]["met"] is False  # 0.6 x all
    assert rows["keep_0.7"]["met"] is False  # under 60 % kept
