"""The pipeline: config checking, one real end-to-end run, and resuming.

The run uses the AN4 fixture with tiny.en as teacher and student; resuming is checked after
parts of the output root are deleted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import fixture_lines, write_manifest

from asr_distill.jsonl import OutputLockedError, exclusive_lock
from asr_distill.pipeline import ConfigError, LabelConfig, ReviewConfig, config_from_dict, plan, run
from asr_distill.teacher.options import LabelOptions

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(tmp: Path) -> dict:
    lines = fixture_lines()
    train = write_manifest(tmp / "data" / "train.jsonl", lines)
    test = write_manifest(tmp / "data" / "test.jsonl", lines[:4])
    return {
        "out": str(tmp / "run"),
        "name": "fixture",
        "data": {
            "train": str(train),
            "test": str(test),
            "sources": [{"name": "CMU AN4 fixture", "licence": "CMU AN4 licence"}],
        },
        "label": {"teacher": "tiny.en", "second": None, "batch_size": 8},
        "filter": {"normaliser": "spoken_form"},
        "train": {
            "config": str(REPO / "recipes" / "support" / "student.yaml"),
            "overrides": {
                "model.kl_weight": 0.0,
                "data.augment_copies": 0,
                "data.val_fraction": 0.25,
                "data.batch_size": 4,
                "trainer.max_epochs": 1,
            },
        },
        "evaluate": {
            "models": {},
            "resamples": 100,
            "sets": {
                "few": str(write_manifest(tmp / "data" / "few.jsonl", lines[4:6])),
                "gone": "gone.jsonl",
            },
        },
    }


@pytest.mark.parametrize(
    "change,message",
    [
        ({"lable": {}}, "unknown key lable"),
        ({"filter": {"keep": "lots"}}, "filter.keep: expected a number or null, got 'lots'"),
        ({"filter": {"kepe": 0.5}}, "unknown key filter.kepe"),
        ({"label": {"batch_size": 2.5}}, "label.batch_size: expected an integer or one of auto, got 2.5"),
        ({"label": {"batch_size": 0}}, "label.batch_size: batch_size must be >= 1 or 'auto', got 0"),
        ({"evaluate": {"batch_size": "many"}}, "evaluate.batch_size: expected an integer or one of auto"),
        ({"evaluate": {"normaliser": "nope"}}, "evaluate.normaliser: unknown normaliser 'nope'"),
        ({"train": {"overrides": ["x"]}}, "train.overrides: expected a mapping"),
        ({"filter": {"keep": 0.5, "threshold": 1.0}}, "only one of threshold, keep, target_wer"),
        ({"data": {"test": "t.jsonl"}}, "missing required key data.train"),
        ({"data": {"train": "t.jsonl", "sources": [{"nme": "x"}]}}, "unknown key data.sources[0].nme"),
        ({"filter": 3}, "filter: expected a mapping (FilterStageConfig), got 3"),
        ({"train": {"enabled": None}}, "train.enabled: expected true or false, got None"),
        (
            {"label": {"backend": "kaldi"}},
            "label.backend: expected one of whisper, faster-whisper, got 'kaldi'",
        ),
        (
            {"label": {"precision": "fp64"}},
            "label.precision: expected one of auto, fp32, bf16, fp16, got 'fp64'",
        ),
        ({"label": {"min_window": 12}}, "label.min_window: expected one of 10, 15, 20, 30, got 12"),
        ({"label": {"beam_size": 0}}, "label: beam_size must be >= 1"),
        ({"label": {"workers": 0}}, "label.workers: must be >= 1, got 0"),
        ({"label": {"pack_s": 45}}, "label.pack_s must be in (0, 30] seconds, got 45"),
        (
            {"label": {"opinions": [{"model": "base", "beam_size": 2, "temperature": [0.7]}]}},
            "label: opinions[0]: beam search needs temperatures starting at 0.0",
        ),
        (
            {"label": {"opinions": [{"model": "base", "beam_size": 5}, {"model": "base", "beam_size": 5}]}},
            "label: opinions: the same decoding twice",
        ),
        ({"label": {"opinions": [{"modl": "base"}]}}, "unknown key label.opinions[0].modl"),
        ({"train": {"members": 0}}, "train.members must be a whole number >= 1, got 0"),
        ({"evaluate": {"sets": {"in_domain": "x.jsonl"}}}, "evaluate.sets: 'in_domain' cannot name a set"),
        ({"evaluate": {"sets": ["x.jsonl"]}}, "evaluate.sets: expected a mapping"),
        ({"export": {"wise_alpha": 1.5}}, "export.wise_alpha must be in [0, 1], got 1.5"),
        (
            {"export": {"checkpoint": "first"}},
            "export.checkpoint must be one of ('best', 'last'), got 'first'",
        ),
    ],
)
def test_bad_configs_name_the_key(tmp_path, change, message):
    cfg = _config(tmp_path)
    cfg.update(change)
    with pytest.raises(ConfigError) as e:
        config_from_dict(cfg)
    assert message in str(e.value)


def test_opinions_are_told_apart_by_decoding_not_file_name(tmp_path):
    """Two checkpoints named alike in two folders are two opinions; one checkpoint named twice is refused."""
    from asr_distill.pipeline.layout import Paths

    cfg = _config(tmp_path)
    cfg["label"] |= {"opinions": [{"model": "round1/student.pt"}, {"model": "round2/student.pt"}]}
    files = Paths(config_from_dict(cfg)).opinion_labels
    assert len(set(files)) == 2
    cfg["label"] |= {"opinions": [{"model": "round1/student.pt"}, {"model": "./round1/student.pt"}]}
    with pytest.raises(ConfigError, match=r"opinions\[0\] and opinions\[1\]"):
        config_from_dict(cfg)


def test_export_takes_the_last_checkpoint_when_asked(tmp_path):
    """``export.checkpoint: last`` is the end of training; without a last.ckpt it says so."""
    from asr_distill.pipeline.layout import export_checkpoint

    with pytest.raises(FileNotFoundError, match="no last.ckpt"):
        export_checkpoint(tmp_path, "last")
    (tmp_path / "epoch00-wer4.81.ckpt").write_bytes(b"x")
    assert (
        export_checkpoint(tmp_path, "best") == tmp_path / "epoch00-wer4.81.ckpt"
    )  # no last.ckpt: the newest
    (tmp_path / "last.ckpt").write_bytes(b"y")
    assert export_checkpoint(tmp_path, "last") == tmp_path / "last.ckpt"
    assert (
        config_from_dict(_config(tmp_path) | {"export": {"checkpoint": "last"}}).export.checkpoint == "last"
    )


def test_a_bad_yaml_config_exits_2_naming_the_key(tmp_path, capsys):
    from asr_distill.cli import main

    config = tmp_path / "pipeline.yaml"
    config.write_text("out: run\ndata: {train: t.jsonl}\nfilter: {keep: lots}\n")
    assert main(["run", str(config), "--check"]) == 2
    assert "filter.keep: expected a number or null, got 'lots'" in capsys.readouterr().err


def test_a_run_lists_every_missing_input_and_unknown_model_before_any_work(tmp_path, capsys):
    """Preflight: the stages about to run are checked against the world, all problems at once."""
    from asr_distill.cli import main
    from asr_distill.pipeline import preflight

    cfg = _config(tmp_path)
    cfg["data"]["test"] = str(tmp_path / "gone_test.jsonl")
    cfg["label"]["teacher"] = "bse"
    cfg["evaluate"]["models"] = {
        "typo": "smal",
        "mine": "ckpts/student.pt",
        "made": "{out}/round1/student.pt",
    }
    with pytest.raises(ConfigError) as e:
        run(cfg)
    lines = str(e.value).splitlines()[1:]
    assert [x.split(":")[0].strip() for x in lines] == [
        "label.teacher",
        "data.test",
        "evaluate.models.typo",
        "evaluate.models.mine",
    ]  # the teacher once, though label and evaluate both use it; {out}'s files are the run's own
    assert not (tmp_path / "run").exists()  # nothing written
    # only the stages that will run are checked: a finished label stage needs no teacher
    later = config_from_dict(cfg)
    assert [x.split(":")[0] for x in preflight.problems(later, ["filter", "train"])] == []
    # review's own inputs: the reviewer's edits and the transcribed clips that fit the word confidence
    cfg["review"] = {"enabled": True, "edits": "gone_edits.json", "calibrate_on": "gone_dev"}
    reviewed = config_from_dict(cfg)
    assert [x.split(":")[0] for x in preflight.problems(reviewed, ["review"])] == [
        "review.edits",
        "review.calibrate_on",
    ]
    del cfg["review"]
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(cfg))
    assert main(["run", str(config), "--check"]) == 2
    assert "label.teacher: 'bse' is neither" in capsys.readouterr().err


def test_a_null_section_takes_its_defaults(tmp_path):
    cfg = config_from_dict(_config(tmp_path) | {"review": None})
    assert cfg.review == ReviewConfig()


def test_every_labeling_option_of_the_cli_reaches_the_label_stage(tmp_path, monkeypatch):
    import asr_distill.parallel
    from asr_distill.cli import build_parser
    from asr_distill.label import LabelStats

    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["label"]._actions}
    named_otherwise = {"help", "input", "out", "model", "shard", "no_progress", "force"}  # LabelConfig; run
    assert flags - named_otherwise <= {f.name for f in dataclasses.fields(LabelConfig)}

    calls = []

    def fake_label_to_file(manifest, out, run, *, force=False):
        calls.append(run)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("")
        return LabelStats(labeled=0, skipped=0, already_done=0, audio_s=0.0, wall_s=1.0)

    monkeypatch.setattr(asr_distill.parallel, "label_to_file", fake_label_to_file)  # what label_job calls
    cfg = _config(tmp_path)
    cfg["label"] = {
        "teacher": "base",
        "second": "tiny.en",
        "beam_size": 5,
        "min_window": 15,
        "precision": "bf16",
        "language": "auto",
        "device": "cpu",
        "seed": 3,
        "full_context": False,
    }
    result = run(cfg, stop="label")
    assert [s.status for s in result.stages] == ["ran"]
    teacher, second = calls
    assert teacher.teacher == "base" and second.teacher == "tiny.en"
    assert teacher.precision == second.precision == "bf16"
    assert teacher.device == second.device == "cpu" and teacher.seed == 3
    assert teacher.options.window_for(3.0) == second.options.window_for(3.0) == 15.0  # min_window
    assert teacher.options.language is None and teacher.options.beam_size == 5
    assert second.options.beam_size is None  # the second model decodes greedily
    assert config_from_dict(_config(tmp_path)).label.options() == LabelOptions()  # defaults: the CLI's


def test_sampling_keys_mean_what_the_cli_flags_mean():
    """``temperature``, ``best_of``: the teacher samples as ``label --temperature``; the second is greedy."""
    from asr_distill.cli import build_parser
    from asr_distill.commands.label import _options

    args = build_parser().parse_args(
        ["label", "in.jsonl", "--out", "o.jsonl", "--temperature", "0.7", "--best-of", "1"]
    )
    cfg = LabelConfig(temperature=[0.7], best_of=1)
    assert cfg.options() == _options(args)
    assert cfg.options().temperatures == (0.7,) and cfg.options().best_of == 1
    assert cfg.options(greedy=True).temperatures == LabelOptions().temperatures


def test_opinions_are_decoded_once_each_and_all_vote_in_the_filter(tmp_path):
    """label.opinions: two samples of tiny.en at 1.0 (two seeds) label the pool; both vote in the filter."""
    cfg = _config(tmp_path)
    sample = {"model": "tiny.en", "temperature": [1.0], "best_of": 1}
    cfg["label"] |= {"opinions": [sample | {"seed": 1}, sample | {"seed": 2}]}
    result = run(cfg, stop="filter")
    assert [s.status for s in result.stages] == ["ran", "ran"]
    label_dir = tmp_path / "run" / "label"
    files = [label_dir / f"opinion{i}_tiny_en_t1_best1_s{i + 1}.jsonl" for i in range(2)]
    texts = []
    for f in files:
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        assert len(rows) == 8 and {d["temperature"] for d in rows} == {1.0}
        texts.append([d["text"] for d in rows])
    assert texts[0] != texts[1]  # another seed, another opinion
    report = json.loads((tmp_path / "run" / "filter" / "filter_report.json").read_text())
    assert report["second_labels"] == [str(f) for f in files]
    kept = [json.loads(x) for x in (tmp_path / "run" / "filter" / "kept.jsonl").read_text().splitlines()]
    assert kept and all(d["word_confidence"] for d in kept)  # the consensus of both, word by word
    assert run(cfg, stop="filter").stages[0].status == "skipped"  # resumable like every stage
    files[1].unlink()  # an opinion lost: the label stage runs again, the other files resume
    assert [s.status for s in run(cfg, stop="filter").stages] == ["ran", "ran"]
    assert [d["text"] for d in map(json.loads, files[1].read_text().splitlines())] == texts[1]  # seeded


def test_the_label_stage_packs_when_asked(tmp_path):
    """label.pack_s: the fixture clips, given one speaker, come back one label each from shared windows."""
    cfg = _config(tmp_path)
    lines = [{k: v for k, v in d.items() if k != "speaker"} for d in fixture_lines()]
    cfg["data"]["train"] = str(write_manifest(tmp_path / "data" / "one_speaker.jsonl", lines))
    cfg["label"] |= {"pack_s": 30}
    result = run(cfg, stop="label")
    assert [s.status for s in result.stages] == ["ran"]
    labels = [json.loads(x) for x in (tmp_path / "run" / "label" / "labels.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in labels) == sorted(d["id"] for d in lines)
    assert sum("packed" in d["provenance"]["decoding"] for d in labels) >= 6  # all but a clip left alone


def test_paths_resolve_against_the_config_folder(tmp_path):
    cfg = config_from_dict(
        {
            "out": "run",
            "data": {"train": "{out}/data/train.jsonl"},
            "train": {
                "enabled": False,
                "overrides": {"data.replay_manifest": "{out}/data/general/manifest.jsonl", "model.lr": 1e-4},
            },
            "evaluate": {"enabled": False},
            "label": {"teacher": "base", "second": "models/x.pt"},
        },
        base_dir=tmp_path,
    )
    assert cfg.out == str(tmp_path / "run")
    replay = cfg.train.overrides["data.replay_manifest"]
    assert replay == str(tmp_path / "run" / "data" / "general" / "manifest.jsonl")
    assert cfg.train.overrides["model.lr"] == 1e-4  # only values naming {out} are paths
    assert cfg.data.train == str(tmp_path / "run" / "data" / "train.jsonl")
    assert cfg.label.teacher == "base"  # a model name stays a name
    assert cfg.label.second == str(tmp_path / "models" / "x.pt")
    sets = config_from_dict(_config(tmp_path), base_dir=tmp_path).evaluate.sets
    assert sets["gone"] == str(tmp_path / "gone.jsonl") and sets["few"].endswith("few.jsonl")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    cfg = _config(tmp)
    result = run(cfg)
    return cfg, result


@pytest.mark.slow
def test_a_run_chains_every_stage_and_writes_its_artefacts(finished_run):
    cfg, result = finished_run
    root = Path(cfg["out"])
    assert {s.name: s.status for s in result.stages} == {
        "label": "ran",
        "filter": "ran",
        "review": "disabled",
        "train": "ran",
        "export": "ran",
        "evaluate": "ran",
        "report": "ran",
    }
    for stage in ("label", "filter", "train", "export", "evaluate", "report"):
        assert (root / stage / ".done").is_file(), stage
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["teacher", "student"]
    teacher = summary["models"][0]
    assert teacher["wer"] < 30 and teacher["normaliser"] == "format_insensitive"
    assert summary["comparisons"][0]["a"] == "student" and summary["comparisons"][0]["b"] == "teacher"
    # the out-of-domain set beside it, the absent one skipped with its reason, the baseline read
    # from the student's checkpoint (cut from the teacher)
    assert list(summary["sets"]) == ["in_domain", "few"] and "gone" in summary["skipped_sets"]
    assert [m["model"] for m in summary["sets"]["few"]["models"]] == ["teacher", "student"]
    assert summary["baselines"] == {"student": "teacher"} and isinstance(summary["regressions"], list)
    assert (root / "eval" / "student@few" / "alignment.txt").is_file()
    report = Path(result.report).read_text()
    assert "Every model on every test set" in report and "gone: skipped" in report
    for png in ("wer_vs_rtfx.png", "label_wer_vs_retention.png", "training_curves.png"):
        assert f"]({png})" in report
        assert (root / "report" / png).read_bytes()[:8] == PNG_MAGIC
    card = json.loads((root / "data_card.json").read_text())
    assert card["teacher"] == card["teacher"] | {"model": "tiny.en", "licence": "MIT (OpenAI Whisper)"}
    assert card["filter"]["kept"] + card["filter"]["dropped"] == card["labels"]["utterances"] == 8
    assert "CMU AN4 fixture" in (root / "data_card.md").read_text()


@pytest.mark.slow
def test_an_evaluation_rerun_decodes_no_model_whose_inputs_are_unchanged(finished_run):
    """New scoring settings rerun the evaluation from its saved decodings, not from the models."""
    cfg, _ = finished_run
    root = Path(cfg["out"])
    hyps = sorted((root / "eval").glob("*/hyps.jsonl"))
    assert len(hyps) == 4  # teacher and student, on both sets
    written = {h: h.stat().st_mtime_ns for h in hyps}
    rescored = copy.deepcopy(cfg)
    rescored["evaluate"]["resamples"] = 200
    statuses = {s.name: s.status for s in run(rescored).stages}
    assert statuses["train"] == "skipped" and statuses["evaluate"] == statuses["report"] == "ran"
    summary = json.loads((root / "eval" / "summary.json").read_text())
    assert summary["comparisons"][0]["delta_ci"]["resamples"] == 200
    assert {h: h.stat().st_mtime_ns for h in hyps} == written
    assert {s.name: s.status for s in run(cfg).stages}["evaluate"] == "ran"  # the fixture's settings back
    assert {h: h.stat().st_mtime_ns for h in hyps} == written


@pytest.mark.slow
def test_rerun_resumes_after_parts_of_the_root_are_deleted(finished_run):
    cfg, first = finished_run
    root = Path(cfg["out"])
    before = json.loads((root / "eval" / "summary.json").read_text())["models"][0]
    checkpoint_mtime = (root / "export" / "student.pt").stat().st_mtime_ns

    shutil.rmtree(root / "eval")
    (root / "report" / "report.md").unlink()
    second = run(cfg)
    assert {s.name: s.status for s in second.stages} == {
        "label": "skipped",
        "filter": "skipped",
        "review": "disabled",
        "train": "skipped",
        "export": "skipped",
        "evaluate": "ran",
        "report": "ran",
    }
    assert (root / "export" / "student.pt").stat().st_mtime_ns == checkpoint_mtime
    after = json.loads((root / "eval" / "summary.json").read_text())["models"][0]
    assert after["model"] == "teacher" and after["wer"] == before["wer"]  # greedy: same hypotheses again

    # A marker without its output does not count; every later stage then becomes stale.
    (root / "filter" / "kept.jsonl").unlink()
    assert dict(plan(cfg)) == {
        "label": "done",
        "filter": "outputs missing",
        "review": "disabled",
        "train": "stale: an earlier stage will run",
        "export": "stale: an earlier stage will run",
        "evaluate": "stale: an earlier stage will run",
        "report": "stale: an earlier stage will run",
    }
    third = run(cfg, stop="filter")
    assert [s.status for s in third.stages] == ["skipped", "ran"]
    assert (root / "filter" / "kept.jsonl").is_file()
    # ...and stays stale across calls: the filter's marker is now newer than train's
    assert dict(plan(cfg))["train"] == "stale: filter is newer"


def test_a_stage_whose_settings_changed_is_stale_and_only_then(finished_run):
    cfg, _ = finished_run
    changed = copy.deepcopy(cfg)
    changed["filter"]["keep_at_least"] = 0.9
    changed["label"]["progress"] = True  # how a stage runs, not what it writes
    changed["label"]["threads"] = 1
    why = dict(plan(changed))
    assert why["label"] == "done"
    assert why["filter"] == "stale: its settings changed"
    assert why["train"].startswith("stale:") and why["report"].startswith("stale:")
    mixed = copy.deepcopy(cfg)
    mixed["export"] = {"wise_alpha": 0.5}
    assert dict(plan(mixed))["export"] == "stale: its settings changed"


def test_the_training_config_counts_by_content_not_by_comments(tmp_path):
    from asr_distill.pipeline.layout import stage_settings

    student = tmp_path / "student.yaml"
    student.write_text((REPO / "recipes" / "support" / "student.yaml").read_text())
    cfg = _config(tmp_path)
    cfg["train"]["config"] = str(student)
    digest = stage_settings(config_from_dict(cfg), "train")
    student.write_text(student.read_text() + "# a note\n")
    assert stage_settings(config_from_dict(cfg), "train") == digest
    student.write_text(student.read_text().replace("seed_everything: 0", "seed_everything: 1"))
    assert stage_settings(config_from_dict(cfg), "train") != digest
    student.write_text(student.read_text().replace("seed_everything: 1", "seed_everything: 0"))
    cfg["train"]["members"] = 1  # a key added since: at its default, finished runs stay finished
    assert stage_settings(config_from_dict(cfg), "train") == digest
    cfg["train"]["members"] = 2
    assert stage_settings(config_from_dict(cfg), "train") != digest


def test_the_review_pad_reruns_review_only_when_it_is_set(tmp_path):
    from asr_distill.pipeline.layout import stage_settings

    cfg = _config(tmp_path)
    digest = stage_settings(config_from_dict(cfg), "review")
    cfg["review"] = {**cfg.get("review", {}), "pad": None}  # added since: unset, finished runs stay finished
    assert stage_settings(config_from_dict(cfg), "review") == digest
    cfg["review"]["pad"] = "0.1:0.5"
    assert stage_settings(config_from_dict(cfg), "review") != digest
    cfg["review"]["pad"] = "0.1:"
    with pytest.raises(ValueError, match="BEFORE:AFTER"):
        config_from_dict(cfg)


@pytest.mark.slow
def test_forced_training_starts_over_instead_of_resuming(finished_run):
    cfg, _ = finished_run
    log = Path(cfg["out"]) / "train" / "train.log"
    forced = run(cfg, start="train", stop="train", force=True)
    assert [s.status for s in forced.stages] == ["ran"]
    starts = [line for line in log.read_text().splitlines() if "training from global step" in line]
    assert starts[-1].split("training from global step ")[1].startswith("0 ")


def test_a_second_run_on_the_same_root_is_refused(tmp_path):
    cfg = config_from_dict(_config(tmp_path))
    Path(cfg.out).mkdir(parents=True)
    with exclusive_lock(Path(cfg.out) / ".lock", cfg.out, "test holds it"):
        with pytest.raises(OutputLockedError, match="another process"):
            run(cfg)
    assert not (Path(cfg.out) / "label").exists()  # refused before any stage started


@pytest.mark.slow
def test_a_soup_trains_each_member_once_and_exports_their_mean(tmp_path):
    """``train.members: 2``: two seeds on one feature cache, resumed per member, averaged at export."""
    import yaml

    from asr_distill.cli import main
    from asr_distill.pipeline.layout import best_checkpoint
    from asr_distill.safe_load import load_checkpoint
    from asr_distill.student.export import load_student_checkpoint

    cfg = _config(tmp_path)
    cfg["train"]["members"] = 2
    cfg["evaluate"] = {"enabled": False}
    run(cfg, stop="export")
    first, second = Path(cfg["out"]) / "train", Path(cfg["out"]) / "train" / "member1"
    configs = [yaml.safe_load((d / "student.yaml").read_text()) for d in (first, second)]
    assert configs[1]["seed_everything"] == configs[0]["seed_everything"] + 1000
    assert configs[1]["data"]["seed"] == configs[0]["data"].get("seed", 0) + 1000
    assert configs[1]["data"]["cache_dir"] == configs[0]["data"]["cache_dir"]  # features computed once
    ckpts = [best_checkpoint(d / "checkpoints") for d in (first, second)]
    members = [dict(load_student_checkpoint(c).model.named_parameters()) for c in ckpts]
    exported = load_checkpoint(Path(cfg["out"]) / "export" / "student.pt")
    assert exported["asr_distill"]["soup_of"] == [str(c.resolve()) for c in ckpts]
    differ = [n for n, w in members[0].items() if not torch.equal(w, members[1][n])]
    assert differ  # two seeds, two students
    for name in differ:
        mean = (members[0][name] + members[1][name]) / 2
        assert torch.allclose(exported["model_state_dict"][name], mean, atol=1e-6), name

    # a member lost is trained again, alone: the finished one is not resumed into more epochs
    lines = len((first / "train.log").read_text().splitlines())
    shutil.rmtree(second / "checkpoints")
    (second / ".trained").unlink()
    assert dict(plan(cfg))["train"] == "outputs missing"
    run(cfg, stop="export")
    assert len((first / "train.log").read_text().splitlines()) == lines
    assert best_checkpoint(second / "checkpoints").is_file()
    assert {s.status for s in run(cfg, stop="export").stages} <= {"skipped", "disabled"}

    # the CLI makes the same soup from the two checkpoints
    out = tmp_path / "soup.pt"
    assert main(["export", *map(str, ckpts), "--out", str(out)]) == 0
    soup = load_checkpoint(out)
    for name in differ:
        assert torch.equal(soup["model_state_dict"][name], exported["model_state_dict"][name]), name


def test_averaging_students_is_their_mean_and_refuses_other_shapes():
    from asr_distill.student.regularise import average_into

    torch.manual_seed(0)
    a, b, c = (torch.nn.Linear(3, 2) for _ in range(3))
    want = (a.weight + b.weight + c.weight).detach() / 3
    assert average_into(a, [b, c]) == 2
    assert torch.allclose(a.weight, want)
    with pytest.raises(ValueError, match="lacks weight of shape"):
        average_into(torch.nn.Linear(4, 2), [b])
