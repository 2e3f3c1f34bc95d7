"""Iterative rounds: the config's checks, the early-stop rule, and two real rounds killed between them.

The rounds run on the AN4 fixture with the smoke-sized settings of ``test_pipeline``; the
run is killed once round 2 has started and rerun: round 1 is not redone, round 2 finishes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_pipeline import _config

from asr_distill.pipeline import ConfigError, config_from_dict, plan, run, stop_reason

KILL_WAIT_S = 1800  # round 1 and round 2's first stage on two loaded cores


def _rounds_config(tmp: Path, rounds: int = 2) -> dict:
    cfg = _config(tmp)
    cfg["label"] = cfg["label"] | {"second": "tiny.en"}
    cfg["filter"] = {"normaliser": "spoken_form", "score": "consensus_agreement", "keep": 0.75}
    return cfg | {"rounds": rounds, "rounds_patience": 1}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"filter": {"score": None}}, "filter.score: rounds: 2 needs a score the students' labels vote in"),
        (
            {"filter": {"score": "consensus_min_word"}},
            "filter.threshold: consensus_min_word has no documented",
        ),
        ({"train": {"enabled": False}}, "train.enabled: rounds: 2 reruns this stage"),
        ({"rounds_dev": "dev"}, "rounds_dev: expected one of in_domain, validation, few, gone, got 'dev'"),
        ({"rounds": 0}, "rounds: must be >= 1, got 0"),
        ({"rounds_patience": 0}, "rounds_patience: must be >= 1, got 0"),
        ({"rounds": "many"}, "rounds: expected an integer"),
    ],
)
def test_bad_rounds_configs_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict(_rounds_config(tmp_path) | change)


def test_a_one_round_run_has_the_stages_it_always_had(tmp_path):
    one = [stage for stage, _ in plan(_config(tmp_path))]
    assert "rounds" not in one
    two = [stage for stage, _ in plan(_rounds_config(tmp_path))]
    assert two == one[: one.index("evaluate") + 1] + ["rounds", "report"]


@pytest.mark.parametrize(
    "devs,patience,stops",
    [
        ([30.0], 1, False),  # nothing to compare yet
        ([30.0, 25.0], 1, False),  # improved
        ([30.0, 30.0], 1, True),  # equal is not better
        ([30.0, 31.0], 2, False),  # patience 2: one bad round is allowed
        ([30.0, 31.0, 30.5], 2, True),
        ([30.0, 31.0, 29.0], 2, False),
        ([30.0, None], 1, False),  # a round without a dev figure cannot stop the run
    ],
)
def test_the_rounds_stop_when_the_dev_wer_stops_falling(devs, patience, stops):
    rows = [{"dev_wer": w} for w in devs]
    reason = stop_reason(rows, patience, "in_domain")
    assert (reason is not None) == stops
    if stops:
        assert f"{patience} round(s) in a row did not lower the in_domain WER" in reason


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.mark.slow
def test_two_rounds_resume_after_a_kill_between_rounds(tmp_path):
    cfg = _rounds_config(tmp_path)
    config = tmp_path / "rounds.yaml"
    config.write_text(yaml.safe_dump(cfg))
    root = Path(cfg["out"])
    started = root / "round2" / "label_student" / ".done"
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - the child writes it until killed
    proc = subprocess.Popen(
        [sys.executable, "-m", "asr_distill.cli", "run", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(started, proc, KILL_WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert not (root / "rounds" / ".done").exists()
    first_student = (root / "export" / "student.pt").stat().st_mtime_ns
    student_labels = started.stat().st_mtime_ns

    result = run(config)  # the same file: its relative paths resolve as they did
    status = {s.name: s.status for s in result.stages}
    assert status == {
        "label": "skipped",
        "filter": "skipped",
        "review": "disabled",
        "train": "skipped",
        "export": "skipped",
        "evaluate": "skipped",
        "rounds": "ran",
        "report": "ran",
    }
    assert (root / "export" / "student.pt").stat().st_mtime_ns == first_student  # round 1 not redone
    assert started.stat().st_mtime_ns == student_labels  # nor round 2's finished first stage
    _check_round_two(root)
    assert dict(plan(config))["rounds"] == "done"


def _check_round_two(root: Path) -> None:
    rounds = json.loads((root / "rounds" / "rounds.json").read_text())
    assert rounds["ran"] == 2 and not rounds["stopped_early"] and rounds["best_round"] in (1, 2)
    one, two = rounds["rounds"]
    assert (one["round"], two["round"]) == (1, 2)
    assert one["p_vs_previous"] is None and 0 <= two["p_vs_previous"] <= 1
    for row in (one, two):
        assert row["kept"] >= 1 and 0 < row["retention"] <= 1
        assert row["label_wer_all"] is not None and row["dev_wer"] == row["student_wer"]["in_domain"]
        assert row["threshold"] is not None and row["threshold_source"]  # the threshold the filter applied
        assert set(row["student_wer"]) == {"in_domain", "few"}
    # round 2's vote: the second model first, then round 1's student decoding the pool
    opinions = json.loads((root / "round2" / "filter" / "filter_report.json").read_text())["second_labels"]
    assert opinions == [
        str(root / "label" / "second.jsonl"),
        str(root / "round2" / "label_student" / "labels.jsonl"),
    ]
    summary = json.loads((root / "round2" / "eval" / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["teacher", "round1", "student"]
    carried = (root / "round2" / "eval" / "round1" / "hyps.jsonl").read_text()
    assert carried == (root / "eval" / "student" / "hyps.jsonl").read_text()  # not decoded again
    train = yaml.safe_load((root / "round2" / "train" / "student.yaml").read_text())
    assert train["data"]["cache_dir"] == str(root / "train" / "feature_cache")
    report = (root / "report" / "report.md").read_text()
    assert "## Iterative rounds" in report and "| 2 |" in report


def test_the_report_sets_the_rounds_side_by_side(tmp_path):
    from asr_distill.report import write_report

    def row(k, kept, wer, p=None, delta=None):
        wers = {"in_domain": wer, "an4": wer + 5}
        figures = {"label_wer_all": 40.0, "label_wer_kept": kept, "retention": 0.5, "seconds": 12.3}
        figures["threshold"] = 0.8 if k == 1 else 0.75  # a retention floor lowered round 2's
        return {"round": k, **figures, "student_wer": wers, "p_vs_previous": p, "delta_vs_previous": delta}

    rows = [row(1, 20.0, 31.5), row(2, 18.0, 30.0, 0.04, -1.5), row(3, 18.5, 30.2, 0.6, 0.2)]
    for r in rows:
        r["dev_wer"] = r["student_wer"]["in_domain"]
    summary = {
        "requested": 4,
        "ran": 3,
        "dev": "in_domain",
        "patience": 1,
        "normaliser": "format_insensitive",
    }
    summary |= {"stopped_early": True, "stop_reason": "1 round(s) in a row did not ...", "best_round": 2}
    (tmp_path / "rounds").mkdir()
    (tmp_path / "rounds" / "rounds.json").write_text(json.dumps(summary | {"rounds": rows}))
    report = write_report(tmp_path).read_text()
    head = "| round | label WER all % | label WER kept % | retention | threshold | student WER in_domain % |"
    assert head in report
    assert "| 2 | 40.00 | 18.00 | 50.0% | 0.75 | 30.00 | 35.00 | -1.50, p=0.040 | 30.00 | 12 |" in report
    assert "| 1 | 40.00 | 20.00 | 50.0% | 0.8 | 31.50 | 36.50 | - | 31.50 | 12 |" in report
    assert "Stopped early after round 3 of 4" in report and "Best on the dev set: round 2." in report
