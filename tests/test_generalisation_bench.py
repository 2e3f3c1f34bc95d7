"""benchmarks/generalisation.py without running a pipeline: reading the evaluate stage's summary, the bars.

The summaries are written by :func:`asr_distill.evaluate.write_summary` from constructed
records, so the benchmark reads the format the evaluate stage really writes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from asr_distill.evaluate import EvaluationSuite, write_summary
from asr_distill.evaluate.artefacts import decoding_inputs
from asr_distill.pipeline import config_from_dict
from asr_distill.records import Evaluation, Interval, ModelResult, PairedComparison, WerResult
from asr_distill.testing.bench import load_benchmark

gen = load_benchmark("generalisation")
NORM = "format_insensitive"


def _result(model: str, wer: float, insertions: int, ref_words: int = 200) -> ModelResult:
    score = WerResult(wer, wer / 2, 3, 2, insertions, ref_words, NORM, 20)
    ci = Interval(wer - 1.5, wer + 1.5, 0.95, 1000)
    return ModelResult(model, model, "test.jsonl", NORM, score, ci, 12.0, 39_000_000, 60.0, 5.0, 0, (), ())


def _evaluation(wers: dict[str, tuple[float, int]], p: dict[tuple[str, str], float], norm: str = NORM):
    results = tuple(_result(m, w, i) for m, (w, i) in wers.items())
    comparisons = tuple(
        PairedComparison(
            a, b, norm, wers[a][0], wers[b][0], wers[a][0] - wers[b][0], Interval(-1, 1, 0.95, 1000), pv, 20
        )
        for (a, b), pv in p.items()
    )
    return Evaluation("test.jsonl", norm, results, comparisons)


def _summary(tmp: Path, student: float = 8.0, p_tiny: float = 0.01, ood_student: float = 20.1) -> dict:
    """A summary.json as the evaluate stage writes it: in_domain and an4 measured, one set skipped."""
    in_domain = _evaluation(
        {"teacher": (9.0, 4), "tiny.en": (10.0, 5), "student": (student, 2)},
        {("tiny.en", "teacher"): 0.8, ("student", "teacher"): 0.03, ("student", "tiny.en"): p_tiny},
    )
    an4 = _evaluation(
        {"teacher": (18.0, 6), "tiny.en": (20.0, 7), "student": (ood_student, 7)},
        {("tiny.en", "teacher"): 0.9, ("student", "teacher"): 0.99, ("student", "tiny.en"): 0.6},
    )
    suite = EvaluationSuite({"in_domain": in_domain, "an4": an4}, skipped={"speechocean762": "not found"})
    tmp.mkdir(parents=True, exist_ok=True)
    write_summary(suite, tmp)
    return json.loads((tmp / "summary.json").read_text())


def test_seed_result_reads_the_evaluate_summary(tmp_path):
    seed = gen.seed_result(_summary(tmp_path), 1)
    assert seed["seed"] == 1
    assert set(seed["sets"]) == {"in_domain", "an4"}
    assert seed["skipped_sets"] == {"speechocean762": "not found"}
    s = seed["sets"]["in_domain"]
    assert s["student"] == {"wer": 8.0, "ci": [6.5, 9.5], "insertions": 2, "insertion_rate": 1.0}
    assert s["tiny_en"]["wer"] == 10.0 and s["teacher"]["insertions"] == 4
    assert s["p_student_vs_tiny_en"] == 0.01 and s["p_student_vs_teacher"] == 0.03
    assert seed["sets"]["an4"]["p_student_vs_tiny_en"] == 0.6


def test_seed_result_refuses_another_normaliser(tmp_path):
    ev = _evaluation({"teacher": (9.0, 1), "student": (8.0, 1)}, {("student", "teacher"): 0.1}, norm="none")
    write_summary(EvaluationSuite({"in_domain": ev}), tmp_path)
    with pytest.raises(ValueError, match="format_insensitive"):
        gen.seed_result(json.loads((tmp_path / "summary.json").read_text()), 0)


def test_a_missing_model_or_comparison_is_none(tmp_path):
    ev = _evaluation({"teacher": (9.0, 1), "student": (8.0, 1)}, {("student", "teacher"): 0.1})
    write_summary(EvaluationSuite({"in_domain": ev}), tmp_path)
    s = gen.seed_result(json.loads((tmp_path / "summary.json").read_text()), 0)["sets"]["in_domain"]
    assert s["tiny_en"] is None and s["p_student_vs_tiny_en"] is None
    assert gen.speechocean_in_domain(s)["pass"] is False


def _set(student, tiny, teacher, p_tiny, p_teacher=0.01, ins=(3, 3)):
    def m(wer, i):
        return {"wer": wer, "ci": [wer - 1, wer + 1], "insertions": i, "insertion_rate": i / 2}

    return {
        "teacher": m(teacher, 3),
        "tiny_en": m(tiny, ins[1]),
        "student": m(student, ins[0]),
        "p_student_vs_tiny_en": p_tiny,
        "p_student_vs_teacher": p_teacher,
    }


@pytest.mark.parametrize(
    "check,s,passes",
    [
        # speechocean762 test: <= 0.85 x tiny.en, <= teacher, p vs tiny.en < 0.05
        (gen.speechocean_in_domain, _set(8.5, 10.0, 9.0, 0.01), True),
        (gen.speechocean_in_domain, _set(8.6, 10.0, 9.0, 0.01), False),
        (gen.speechocean_in_domain, _set(8.0, 10.0, 7.9, 0.01), False),
        (gen.speechocean_in_domain, _set(8.0, 10.0, 9.0, 0.06), False),
        # support test: better than both, each p < 0.05
        (gen.support_in_domain, _set(5.0, 10.0, 9.0, 0.01, 0.02), True),
        (gen.support_in_domain, _set(5.0, 10.0, 9.0, 0.01, 0.2), False),
        (gen.support_in_domain, _set(9.0, 10.0, 9.0, 0.01, 0.0), False),
        (gen.support_in_domain, _set(5.0, 10.0, 9.0, None, 0.0), False),
        # out of domain: not significantly worse, <= 0.3 points worse, insertions <= tiny.en's
        (gen.out_of_domain, _set(20.0, 20.0, 18.0, 1.0), True),  # decoding alike: p 1, no gap
        (gen.out_of_domain, _set(20.3, 20.0, 18.0, 0.9), True),
        (gen.out_of_domain, _set(20.31, 20.0, 18.0, 0.9), False),
        (gen.out_of_domain, _set(20.2, 20.0, 18.0, 0.97), False),  # significantly worse
        (gen.out_of_domain, _set(19.0, 20.0, 18.0, 0.0, ins=(4, 3)), False),
        (gen.out_of_domain, _set(19.0, 20.0, 18.0, 0.0, ins=(2, 3)), True),
    ],
)
def test_bar_checks(check, s, passes):
    r = check(s)
    assert r["pass"] is passes
    assert ("missing" in r) is (s["p_student_vs_tiny_en"] is None)


def _seeds(passes: list[bool], ood: bool = True) -> list[dict]:
    good, bad = _set(5.0, 10.0, 9.0, 0.01, 0.01), _set(9.5, 10.0, 9.0, 0.3, 0.6)
    an4 = _set(20.0, 20.0, 18.0, 0.5) if ood else _set(21.0, 20.0, 18.0, 0.99)
    return [{"seed": n, "sets": {"in_domain": good if p else bad, "an4": an4}} for n, p in enumerate(passes)]


@pytest.mark.parametrize(
    "passes,expected",
    [([True, True, False], True), ([True, False, False], False), ([True, True, True], True), ([True], True)],
)
def test_support_in_domain_bar_needs_two_seeds_of_three(passes, expected):
    bar = gen.check_bar(gen.BARS["support"][0], _seeds(passes))
    assert bar["pass"] is expected
    assert bar["seeds_passed"] == sum(passes)
    assert [r["seed"] for r in bar["per_seed"]] == list(range(len(passes)))


def test_every_seed_must_meet_an_out_of_domain_bar():
    seeds = _seeds([True, True, True])
    seeds[2]["sets"]["an4"] = _set(20.5, 20.0, 18.0, 0.8)
    bar = gen.check_bar(gen.BARS["support"][1], seeds)
    assert bar["pass"] is False and bar["seeds_needed"] == 3 and bar["seeds_passed"] == 2


def test_check_bars_pass_only_when_every_bar_passed():
    ok = gen.check_bars({"speechocean": {"seeds": _seeds([True, True])}})
    assert ok["pass"] is True
    assert ok["speechocean"]["in_domain"]["per_seed"][0]["ratio_to_tiny_en"] == 0.5
    assert gen.check_bars({"speechocean": {"seeds": _seeds([True, False])}})["pass"] is False
    # support's speechocean762 set was not measured: that bar is n/a, and the whole is not met
    support = gen.check_bars({"support": {"seeds": _seeds([True, True, True])}})
    assert support["support"]["speechocean762"]["pass"] is None
    assert support["pass"] is False


def test_summarise_mean_and_sd_over_seeds():
    seeds = [
        {"seed": n, "sets": {"in_domain": _set(w, 12.0, 11.0, 0.01)}} for n, w in enumerate([10, 12, 14])
    ]
    seeds[0]["sets"]["an4"] = _set(20.0, 19.0, 18.0, 0.5)
    out = gen.summarise(seeds)
    assert out["in_domain"]["student"] == {"mean": 12.0, "sd": 2.0, "n": 3}
    assert out["in_domain"]["tiny_en"] == {"mean": 12.0, "sd": 0.0, "n": 3}
    assert out["in_domain"]["student_minus_tiny_en"]["mean"] == 0.0
    assert out["an4"]["student"] == {"mean": 20.0, "sd": None, "n": 1}
    assert gen.mean_sd([]) == {"mean": None, "sd": None, "n": 0}


def test_table_rows_have_each_seed_then_the_mean():
    seeds = [{"seed": n, "sets": {"in_domain": _set(w, 12.0, 11.0, 0.01)}} for n, w in enumerate([10, 14])]
    recipes = {"speechocean": {"seeds": seeds}}
    rows = gen.table_rows(recipes, {"speechocean": gen.summarise(seeds)})
    assert [r["seed"] for r in rows] == [0, 1, "mean ± sd"]
    assert rows[-1]["student"] == "12.00 ± 2.83"
    text = gen.format_table(rows)
    assert "mean ± sd" in text and "0.010" in text


@pytest.mark.parametrize("seed", range(40))
def test_synthesis_seeds_never_make_the_test_calls(seed):
    assert gen.synth_seed(seed) != gen.SUPPORT_TEST_SEED
    assert gen.synth_seed(0) == gen.SUPPORT_TRAIN_SEED


def test_support_config_for_a_seed(tmp_path):
    root = tmp_path / "support-small"
    cfg = gen.pipeline_config("support", "small", root, 1, max_time="00:00:07:00")
    assert cfg["out"] == str((root / "seed1").resolve())
    assert cfg["data"]["train"] == str((root / "seed1" / "data" / "train" / "manifest.jsonl").resolve())
    assert cfg["data"]["test"] == str(root.resolve() / "data" / "test" / "manifest.jsonl")
    assert cfg["evaluate"]["sets"]["speechocean762"] == str(
        root.resolve() / "data" / "ood" / "speechocean762.jsonl"
    )
    overrides = cfg["train"]["overrides"]
    assert overrides["seed_everything"] == 1 and overrides["data.seed"] == 1
    assert overrides["trainer.max_time"] == "00:00:07:00" and overrides["model.init"] == "tiny.en"
    parsed = config_from_dict(cfg, base_dir=gen.RECIPES_DIR / "support")
    assert parsed.filter.lexicon == str(gen.RECIPES_DIR / "support" / "lexicon.txt")
    assert parsed.evaluate.normaliser == "format_insensitive"
    # seed 0 is run.sh's own pool, in the shared data
    seed0 = gen.pipeline_config("support", "small", root, 0)
    assert seed0["data"]["train"] == str(root.resolve() / "data" / "train" / "manifest.jsonl")


def test_speechocean_smoke_config_has_its_ood_sets_and_tiny_en(tmp_path):
    root = tmp_path / "speechocean-smoke"
    cfg = gen.pipeline_config("speechocean", "smoke", root, 2)
    assert cfg["data"]["train"] == str(root.resolve() / "data" / "train.jsonl")
    ood = root.resolve() / "data" / "ood"
    assert cfg["evaluate"]["sets"] == {
        "an4": str(ood / "an4.jsonl"),
        "support": str(ood / "support" / "manifest.jsonl"),
    }
    assert cfg["evaluate"]["models"] == {"tiny.en": "tiny.en"}
    assert "trainer.max_time" not in cfg["train"]["overrides"]
    config_from_dict(cfg, base_dir=gen.RECIPES_DIR / "speechocean")


def _finished_label_run(run: Path, cfg: dict, second: bool = True) -> None:
    """A run root whose label stage finished, as the runner leaves it."""
    (run / "label").mkdir(parents=True)
    (run / "label" / ".done").write_text("{}\n")
    (run / "label" / "labels.jsonl").write_text("{}\n")
    if second:
        (run / "label" / "second.jsonl").write_text("{}\n")
    saved = dataclasses.asdict(config_from_dict(cfg, base_dir=gen.RECIPES_DIR / "speechocean"))
    (run / "pipeline_config.json").write_text(json.dumps(saved))


def _pool(path: Path, text: str = "a") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"audio_filepath": "/x.wav", "duration": 1.0, "text": text}) + "\n")
    return path


def test_speechocean_reuses_labels_of_the_same_pool_and_settings(tmp_path):
    root = tmp_path / "speechocean-small"
    _pool(root / "data" / "train.jsonl")
    ours = gen.pipeline_config("speechocean", "small", root, 1)
    seed0 = gen.pipeline_config("speechocean", "small", root, 0)
    _finished_label_run(root / "seed0", seed0)
    base = gen.RECIPES_DIR / "speechocean"
    reused = gen.reusable_labels(ours, base, [root / "seed0"])
    assert reused == {
        "labels": str(root / "seed0" / "label" / "labels.jsonl"),
        "second_labels": str(root / "seed0" / "label" / "second.jsonl"),
    }
    # never its own labels, nor an unfinished run's
    assert gen.reusable_labels(seed0, base, [root / "seed0", root / "seed2"]) == {}


def test_speechocean_follows_a_seed_that_reused_labels_to_their_files(tmp_path):
    """Seed 1 reused seed 0's labels (no files of its own): a rerun of seed 1's variant finds them."""
    root = tmp_path / "speechocean-small"
    _pool(root / "data" / "train.jsonl")
    base = gen.RECIPES_DIR / "speechocean"
    _finished_label_run(root / "seed0", gen.pipeline_config("speechocean", "small", root, 0))
    seed1 = gen.pipeline_config("speechocean", "small", root, 1)
    seed1["label"] |= gen.reusable_labels(seed1, base, [root / "seed0"])
    _finished_label_run(root / "seed1", seed1)
    for name in ("labels.jsonl", "second.jsonl"):
        (root / "seed1" / "label" / name).unlink()
    variant = gen.pipeline_config("speechocean", "small", root, 1, variant="v")
    assert gen.reusable_labels(variant, base, [root / "seed1"]) == {
        "labels": str(root / "seed0" / "label" / "labels.jsonl"),
        "second_labels": str(root / "seed0" / "label" / "second.jsonl"),
    }
    (root / "seed0" / "label" / "labels.jsonl").unlink()  # gone: nothing to reuse
    assert gen.reusable_labels(variant, base, [root / "seed1"]) == {}


@pytest.mark.parametrize("change", ["pool", "teacher", "no second file"])
def test_speechocean_does_not_reuse_other_labels(tmp_path, change):
    root = tmp_path / "speechocean-small"
    _pool(root / "data" / "train.jsonl")
    other = tmp_path / "recipe-run"
    theirs = gen.pipeline_config("speechocean", "small", root, 0)
    theirs["out"] = str(other)
    if change == "pool":
        theirs["data"]["train"] = str(_pool(other / "data" / "train.jsonl", text="b"))
    if change == "teacher":
        theirs["label"] = theirs["label"] | {"teacher": "small"}
    _finished_label_run(other, theirs, second=change != "no second file")
    ours = gen.pipeline_config("speechocean", "small", root, 1)
    assert gen.reusable_labels(ours, gen.RECIPES_DIR / "speechocean", [other]) == {}


def _decoded(folder: Path, hyp: str, inputs: str | None = None) -> None:
    """A finished decoding of one set, as save_transcription leaves it."""
    folder.mkdir(parents=True)
    row = {"id": "u1", "ref": "a", "hyp": hyp, "duration": 1.0, "speaker": None}
    (folder / "hyps.jsonl").write_text(json.dumps(row) + "\n")
    timing = {"model": "m", "source": "m", "params": 1, "audio_s": 1.0, "wall_s": 0.5, "skipped": 0}
    if inputs is not None:
        timing["inputs"] = inputs
    (folder / "timing.json").write_text(json.dumps(timing) + "\n")


def _saved_config(run: Path, cfg: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    saved = dataclasses.asdict(config_from_dict(cfg, base_dir=gen.RECIPES_DIR / "speechocean"))
    (run / "pipeline_config.json").write_text(json.dumps(saved))


@pytest.mark.parametrize("change", [None, "test set", "normaliser", "teacher", "set rewritten", "no inputs"])
def test_baselines_decoded_once_are_reused_by_other_seeds(tmp_path, change):
    root = tmp_path / "speechocean-small"
    _pool(root / "data" / "train.jsonl")
    _pool(root / "data" / "test.jsonl", text="test")
    ood = _pool(root / "data" / "ood" / "an4.jsonl", text="an4")
    donor = root / "seed0"
    theirs = gen.pipeline_config("speechocean", "small", root, 0)
    if change == "test set":
        theirs["data"]["test"] = str(_pool(tmp_path / "other" / "test.jsonl", text="other"))
    if change == "normaliser":
        theirs["evaluate"]["normaliser"] = "whisper_en"
    if change == "teacher":
        theirs["label"] = dict(theirs.get("label") or {}) | {"teacher": "small"}
    _saved_config(donor, theirs)
    teacher = theirs["label"]["teacher"]
    decoded = {"teacher": (teacher, theirs["data"]["test"]), "tiny.en": ("tiny.en", theirs["data"]["test"])}
    decoded |= {"student": ("s.pt", theirs["data"]["test"]), "teacher@an4": (teacher, ood)}
    for folder, (spec, manifest) in decoded.items():
        inputs = None if change == "no inputs" else decoding_inputs(spec, manifest)
        _decoded(donor / "eval" / folder, hyp=folder, inputs=inputs)
    if change == "set rewritten":  # the AN4 file now holds other utterances than the ones decoded
        _pool(ood, text="an4, more of it")
    _decoded(root / "seed1" / "eval" / "tiny.en", hyp="stale")  # an earlier decoding of other inputs
    ours = gen.pipeline_config("speechocean", "small", root, 1)
    filled = gen.reuse_baselines(ours, gen.RECIPES_DIR / "speechocean", [donor, root / "seed1"])
    ev = root / "seed1" / "eval"
    if change is None:
        assert sorted(f.name for f in filled) == ["teacher", "teacher@an4", "tiny.en"]
        assert (ev / "teacher" / "hyps.jsonl").read_bytes() == (
            donor / "eval" / "teacher" / "hyps.jsonl"
        ).read_bytes()
        assert not (ev / "student").exists()  # the student is every seed's own
        assert "stale" not in (ev / "tiny.en" / "hyps.jsonl").read_text()  # replaced by the donor's
    elif change == "test set":  # the in-domain set differs, the AN4 set is the same file
        assert [f.name for f in filled] == ["teacher@an4"]
    elif change == "set rewritten":  # the in-domain decodings still stand, the AN4 one does not
        assert sorted(f.name for f in filled) == ["teacher", "tiny.en"]
    else:  # other settings, or decodings saved without their inputs
        assert filled == []
    # a second call finds the folders filled and leaves them
    assert gen.reuse_baselines(ours, gen.RECIPES_DIR / "speechocean", [donor]) == []
    assert ood.is_file()


def test_only_collect_writes_the_json_from_finished_seeds(tmp_path, capsys):
    root = tmp_path / "runs" / "speechocean-small"
    for seed, student in [(0, 8.0), (1, 8.6)]:
        run = root / f"seed{seed}"
        _summary(run / "eval", student=student)
        (run / "evaluate").mkdir()
        (run / "evaluate" / ".done").write_text(json.dumps({"seconds": 12.5}) + "\n")
        cfg = gen.pipeline_config("speechocean", "small", root, seed)
        (run / "pipeline_config.json").write_text(json.dumps(cfg))
    result = tmp_path / "generalisation.json"
    argv = ["--only-collect", "--recipes", "speechocean", "--seeds", "0", "1", "2"]
    assert gen.main([*argv, "--out-dir", str(tmp_path / "runs"), "--result", str(result)]) == 0
    out = json.loads(result.read_text())
    assert out["normaliser"] == "format_insensitive"
    seeds = out["recipes"]["speechocean"]["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1] and out["missing"] == ["speechocean seed 2"]
    assert seeds[1]["train_seed"] == 1 and seeds[1]["stage_seconds"] == {"evaluate": 12.5}
    assert out["summary"]["speechocean"]["in_domain"]["student"]["mean"] == 8.3
    # 8.6 > 0.85 x 10: seed 1 misses the speechocean762 bar; an4 is within 0.3 points in both
    assert out["bars"]["speechocean"]["in_domain"]["seeds_passed"] == 1
    assert out["bars"]["speechocean"]["an4"]["pass"] is True
    assert out["bars"]["pass"] is None  # seed 2 has not finished
    assert "cpu_model" in out["machine"]
    printed = capsys.readouterr().out
    assert "FAIL  speechocean in_domain" in printed and "not finished: speechocean seed 2" in printed
    assert "all bars: undecided" in printed


def test_a_variant_runs_beside_the_recipe_with_its_overrides(tmp_path):
    root = tmp_path / "speechocean-small"
    overrides = gen.parse_overrides(["model.lwf_weight=1.0", "data.augment=[noise, telephone]"])
    assert overrides == {"model.lwf_weight": 1.0, "data.augment": ["noise", "telephone"]}
    cfg = gen.pipeline_config("speechocean", "small", root, 1, variant="lwf", train_overrides=overrides)
    assert cfg["out"] == str((root / "lwf-seed1").resolve())
    assert cfg["train"]["overrides"]["model.lwf_weight"] == 1.0
    assert cfg["train"]["overrides"]["seed_everything"] == 1  # the seed is the benchmark's, always
    # the recipe's own seeds are untouched, and the variant shares their pool
    plain = gen.pipeline_config("speechocean", "small", root, 1)
    assert "model.lwf_weight" not in plain["train"]["overrides"]
    assert plain["data"]["train"] == cfg["data"]["train"]
    with pytest.raises(SystemExit):
        gen.parse_overrides(["model.lwf_weight"])
    quarter = gen.parse_overrides(["wise_alpha=0.25"], "--export-override")
    written = {"normaliser": "whisper_basic"}
    wise = gen.pipeline_config(
        "speechocean",
        "small",
        root,
        1,
        variant="wise",
        stage_overrides={
            "export": quarter,
            "filter": written,
            "label": {"pack_s": 30},
            "train": {"members": 3},
        },
    )
    assert wise["export"]["wise_alpha"] == 0.25
    assert (plain.get("export") or {}).get("wise_alpha") != 0.25
    assert wise["filter"]["normaliser"] == "whisper_basic" and plain["filter"]["normaliser"] == "none"
    from asr_distill.pipeline.config import config_from_dict

    built = config_from_dict(wise, base_dir=gen.RECIPES_DIR / "speechocean")
    assert built.export.wise_alpha == 0.25 and built.filter.normaliser == "whisper_basic"
    assert built.label.pack_s == 30 and (plain.get("label") or {}).get("pack_s") is None
    assert built.train.members == 3 and built.train.overrides["seed_everything"] == 1  # --members 3
    assert config_from_dict(plain, base_dir=gen.RECIPES_DIR / "speechocean").train.members == 1
    with pytest.raises(ValueError, match="stage overrides are for label, filter, export, evaluate, train"):
        gen.pipeline_config("speechocean", "small", root, 1, variant="x", stage_overrides={"report": {}})


def test_an_evaluate_variant_scores_on_a_bigger_set_and_keeps_the_others(tmp_path):
    root = tmp_path / "support-small"
    whole = gen.parse_overrides(["sets={speechocean762: '{out}/data/ood/all.jsonl'}"], "--evaluate-override")
    plain = gen.pipeline_config("support", "small", root, 0)
    cfg = gen.pipeline_config("support", "small", root, 0, variant="all", stage_overrides={"evaluate": whole})
    shared = str(root.resolve())
    assert cfg["evaluate"]["sets"]["speechocean762"] == f"{shared}/data/ood/all.jsonl"
    an4 = f"{shared}/data/ood/an4.jsonl"
    assert cfg["evaluate"]["sets"]["an4"] == plain["evaluate"]["sets"]["an4"] == an4
    assert plain["evaluate"]["sets"]["speechocean762"] == f"{shared}/data/ood/speechocean762.jsonl"
    assert cfg["evaluate"]["normaliser"] == gen.NORMALISER and cfg["train"] == plain["train"]
    assert whole == {"sets": {"speechocean762": "{out}/data/ood/all.jsonl"}}  # the caller's dict is untouched
    with pytest.raises(ValueError, match="cannot change it"):
        gen.pipeline_config(
            "support", "small", root, 0, variant="x", stage_overrides={"evaluate": {"normaliser": "none"}}
        )


def test_a_variant_is_compared_with_the_recipes_student_of_its_seed(tmp_path):
    """Paired bootstrap on the saved hypotheses: a variant that fixes the recipe's errors wins."""
    from asr_distill.evaluate.artefacts import save_transcription
    from asr_distill.records import Transcription

    refs = tuple(f"call me back at {n} please" for n in range(40))
    ids = tuple(f"u{n}" for n in range(40))

    def saved(root: Path, folder: str, hyps: tuple[str, ...]) -> None:
        t = Transcription("student", "s.pt", 1, ids, refs, hyps, (2.0,) * 40, (None,) * 40, 80.0, 1.0)
        save_transcription(t, root / "eval" / folder)

    worse = tuple(r.replace("please", "") for r in refs)
    saved(tmp_path / "plain", "student", worse)
    saved(tmp_path / "variant", "student", refs)
    saved(tmp_path / "variant", "student@an4", refs)  # the recipe's seed has no an4 decoding
    saved(tmp_path / "plain", "student@so", worse)
    more = Transcription(
        "student", "s.pt", 1, (*ids, "u40"), (*refs, "x"), (*refs, "x"), (2.0,) * 41, (None,) * 41, 82.0, 1.0
    )
    save_transcription(more, tmp_path / "variant" / "eval" / "student@so")  # a bigger set: not paired
    out = gen.against_recipe(tmp_path / "variant", tmp_path / "plain")
    assert set(out) == {"in_domain"}
    assert out["in_domain"]["variant"] == 0.0 and out["in_domain"]["recipe"] > 10  # one word in each
    assert out["in_domain"]["p"] < 0.05
    assert gen.against_recipe(tmp_path / "plain", tmp_path / "variant")["in_domain"]["p"] > 0.95


def test_an_export_variant_starts_from_another_variants_training(tmp_path):
    """Copied stages count as done for a variant with the same training, and as stale for another."""
    from asr_distill.jsonl import atomic_write_text
    from asr_distill.pipeline import Paths
    from asr_distill.pipeline.layout import mark_done, settings_changed, stage_settings

    root = tmp_path / "speechocean-small"
    enc = {"model.train_encoder_layers": 4}
    trained = gen.pipeline_config("speechocean", "small", root, 1, variant="enc4", train_overrides=enc)
    p = Paths(config_from_dict(trained, base_dir=gen.RECIPES_DIR / "speechocean"))
    for stage in ("label", "filter", "train"):
        p.stage_dir(stage).mkdir(parents=True)
        mark_done(p.done(stage), 1.0, {"stage": stage, "settings": stage_settings(p.cfg, stage)})
    atomic_write_text(p.stage_dir("train") / "student.yaml", "trained: true\n")
    cached = p.stage_dir("train") / "feature_cache" / "clip.pt"
    cached.parent.mkdir()
    cached.write_bytes(b"features")
    src, dst = root / "enc4-seed1", root / "enc4_w025-seed1"
    assert gen.copy_training(src, dst) == ["label", "filter", "train"]
    assert gen.copy_training(src, dst) == []  # a variant seed that has stages keeps them

    def stale(variant: str, overrides: dict, export: dict) -> dict[str, bool]:
        cfg = gen.pipeline_config(
            "speechocean",
            "small",
            root,
            1,
            variant=variant,
            train_overrides=overrides,
            stage_overrides={"export": export},
        )
        q = Paths(config_from_dict(cfg, base_dir=gen.RECIPES_DIR / "speechocean"))
        return {stage: settings_changed(q, stage) for stage in ("label", "filter", "train")}

    assert stale("enc4_w025", enc, {"wise_alpha": 0.25}) == {"label": False, "filter": False, "train": False}
    assert stale("enc4_w025", {"model.train_encoder_layers": 2}, {})["train"] is True
    # a rerun appends to files in place: they are copies; the feature cache is shared
    with open(dst / "train" / "student.yaml", "a") as f:
        f.write("rerun\n")
    assert (src / "train" / "student.yaml").read_text() == "trained: true\n"
    assert (dst / "train" / "feature_cache" / "clip.pt").samefile(cached)


def test_an_export_variant_names_the_training_it_would_not_share(tmp_path):
    """An export-only variant from another variant's seed must repeat that variant's training settings."""
    root = tmp_path / "support-small"
    lwf = {"model.lwf_weight": 1.0}
    donor = gen.pipeline_config("support", "small", root, 0, variant="lwf1", train_overrides=lwf)
    (root / "lwf1-seed0").mkdir(parents=True)
    (root / "lwf1-seed0" / "pipeline_config.json").write_text(json.dumps(donor))
    export = {"export": {"wise_alpha": 1.0}}
    bare = gen.pipeline_config("support", "small", root, 0, variant="lwf1_w10", stage_overrides=export)
    assert gen.training_differences(root / "lwf1-seed0", bare) == {"model.lwf_weight": (1.0, None)}
    same = gen.pipeline_config("support", "small", root, 0, None, "lwf1_w10", lwf, export)
    assert gen.training_differences(root / "lwf1-seed0", same) == {}
    with pytest.raises(SystemExit):
        gen.main(
            [
                "--recipes",
                "support",
                "--seeds",
                "0",
                "--variant",
                "lwf1_w10",
                "--train-from",
                "lwf1",
                "--export-override",
                "wise_alpha=1.0",
                "--out-dir",
                str(tmp_path),
            ]
        )
    assert not (root / "lwf1_w10-seed0").exists()


def test_a_variant_can_be_paired_with_another_variant_instead_of_the_recipes_seed(tmp_path):
    """--compare-to: when a recipe's seedN folders hold an older setting, pair with the shipped one."""
    from asr_distill.evaluate.artefacts import save_transcription
    from asr_distill.records import Transcription

    refs = tuple(f"call me back at {n} please" for n in range(40))
    ids = tuple(f"u{n}" for n in range(40))
    root = tmp_path / "runs" / "speechocean-small"
    worse = tuple(r.replace("please", "") for r in refs)
    for folder, hyps in [("seed0", worse), ("shipped-seed0", refs), ("new-seed0", refs)]:
        run = root / folder
        _summary(run / "eval")
        t = Transcription("student", "s.pt", 1, ids, refs, hyps, (2.0,) * 40, (None,) * 40, 80.0, 1.0)
        save_transcription(t, run / "eval" / "student")
        (run / "evaluate").mkdir()
        (run / "evaluate" / ".done").write_text(json.dumps({"seconds": 1.0}) + "\n")
        cfg = gen.pipeline_config("speechocean", "small", root, 0)
        (run / "pipeline_config.json").write_text(json.dumps(cfg))
    argv = ["--only-collect", "--recipes", "speechocean", "--seeds", "0", "--variant", "new"]
    argv += ["--out-dir", str(tmp_path / "runs")]
    results = {}
    for against in (None, "shipped"):
        results[against] = tmp_path / f"{against}.json"
        extra = ["--compare-to", against] if against else []
        assert gen.main([*argv, *extra, "--result", str(results[against])]) == 0
    default, shipped = (json.loads(results[k].read_text()) for k in (None, "shipped"))
    assert default["compared_to"] == "recipe" and shipped["compared_to"] == "shipped"
    vs_old = default["recipes"]["speechocean"]["seeds"][0]["vs_recipe"]["in_domain"]
    vs_shipped = shipped["recipes"]["speechocean"]["seeds"][0]["vs_recipe"]["in_domain"]
    assert vs_old["recipe"] > 10 and vs_old["p"] < 0.05  # the old setting lost a word in each
    assert vs_shipped["recipe"] == 0.0 and vs_shipped["p"] > 0.05  # the same hypotheses: no win
