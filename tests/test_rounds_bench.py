"""benchmarks/rounds.py's choice of labels to reuse: only a finished run of the same pool."""

from __future__ import annotations

import argparse

import pytest

from asr_distill.testing.bench import load_benchmark

rounds = load_benchmark("rounds")


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**({"small": False, "first": None} | kw))


@pytest.mark.parametrize(
    ("pool_text", "done", "reused"),
    [("same", True, True), ("other", True, False), ("same", False, False)],
    ids=["same pool, finished", "another pool", "unfinished"],
)
def test_small_reuses_only_a_finished_run_of_the_same_pool(tmp_path, monkeypatch, pool_text, done, reused):
    run = tmp_path / "speechocean-small"
    (run / "data").mkdir(parents=True)
    (run / "label").mkdir()
    (run / "data" / "train.jsonl").write_text('{"audio_filepath": "/a.wav", "duration": 1.0}\n')
    if done:
        (run / "label" / ".done").write_text("{}\n")
    monkeypatch.setattr(rounds, "SMALL_RUN", run)
    monkeypatch.setattr(rounds, "FULL_LABELS", tmp_path / "absent")
    pool = tmp_path / "pool.jsonl"
    text = (run / "data" / "train.jsonl").read_text()
    pool.write_text(text if pool_text == "same" else text.replace("a.wav", "b.wav"))
    found = rounds.recipe_labels(_args(small=True), pool)
    assert found == (run / "label" if reused else None)
    # a subset of the pool is always labeled in the run; the full pool looks at the full recipe
    assert rounds.recipe_labels(_args(small=True, first=8), pool) is None
    assert rounds.recipe_labels(_args(), pool) is None


def test_small_reuses_a_finished_seed_of_the_generalisation_benchmark(tmp_path, monkeypatch):
    run = tmp_path / "speechocean-small"
    (run / "data").mkdir(parents=True)
    (run / "data" / "train.jsonl").write_text('{"audio_filepath": "/a.wav", "duration": 1.0}\n')
    for seed, done in (("seed0", False), ("seed1", True)):
        (run / seed / "label").mkdir(parents=True)
        if done:
            (run / seed / "label" / ".done").write_text("{}\n")
    monkeypatch.setattr(rounds, "SMALL_RUN", run)
    pool = tmp_path / "pool.jsonl"
    pool.write_text((run / "data" / "train.jsonl").read_text())
    assert rounds.recipe_labels(_args(small=True), pool) == run / "seed1" / "label"


@pytest.mark.parametrize("seed", [None, 1])
def test_seed_reaches_every_rounds_training_and_keeps_the_recipe_overrides(tmp_path, monkeypatch, seed):
    shared = tmp_path / "shared"
    line = '{"audio_filepath": "/a.wav", "duration": 1.0, "text": "a"}\n'
    for rel in ("speechocean762/pool.jsonl", "speechocean762/test.jsonl", "an4/test.jsonl"):
        (shared / rel).parent.mkdir(parents=True, exist_ok=True)
        (shared / rel).write_text(line)
    monkeypatch.setattr(rounds, "SHARED_DATA", shared)
    monkeypatch.setattr(rounds, "SMALL_RUN", tmp_path / "absent")
    monkeypatch.setattr(rounds, "FULL_LABELS", tmp_path / "absent")
    args = _args(small=True, smoke=False, test_first=None, ood_first=None, rounds=3, max_time=None, seed=seed)
    args.out_dir = str(tmp_path / "out")
    overrides = rounds.pipeline_config(args)["train"]["overrides"]
    assert overrides["trainer.max_epochs"] == 8  # config_small.yaml's own override survives
    if seed is None:
        assert "seed_everything" not in overrides and "data.seed" not in overrides
    else:
        assert overrides["seed_everything"] == overrides["data.seed"] == seed


def _result(seed, wers, ps):
    rows = [
        {"student_wer": w, "ood_wer": 3.0 + k, "label_wer_kept": 12.0, "retention": 0.6, "p_vs_previous": p}
        for k, (w, p) in enumerate(zip(wers, ps, strict=True))
    ]
    return {"train_seed": seed, "command": f"seed {seed}", "rounds": rows}


def test_summarise_sets_the_seeds_side_by_side_with_a_test_over_seeds():
    # round 2 is 1.0-1.2 points better than round 1 in every seed; round 3 goes back up in two
    results = [
        _result(None, [40.0, 39.0, 39.5], [None, 0.01, 0.9]),  # the config's seed: 0
        _result(1, [41.0, 39.8, 41.5], [None, 0.2, 0.99]),
        _result(2, [39.0, 37.9, 37.0], [None, 0.03, 0.02]),
    ]
    out = rounds.summarise(results)
    assert out["seeds"] == [0, 1, 2]
    one, two, three = out["rounds"]
    assert one["student_wer"]["mean"] == 40.0 and "p_vs_first_over_seeds" not in one
    assert two["delta_vs_first"]["per_seed"] == [-1.0, -1.2, -1.1]
    assert (two["better_than_previous"], two["worse_than_previous"]) == (2, 0)
    assert two["p_vs_first_over_seeds"] < 0.01  # a steady gain over seeds
    assert (three["better_than_previous"], three["worse_than_previous"]) == (1, 1)
    assert three["p_vs_first_over_seeds"] > 0.05  # -0.5, +0.5, -2.0: not steady
    assert three["ood_wer"]["mean"] == 5.0


def test_summarise_refuses_the_same_seed_twice():
    with pytest.raises(SystemExit, match="same training seed"):
        rounds.summarise([_result(1, [40.0], [None]), _result(1, [41.0], [None])])
