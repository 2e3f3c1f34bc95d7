"""Every recipe's first stages run for real (the full chain runs in `make demo`).

Support stages 0-1 (Piper synthesis, labeling), AN4 stages 0-1 on a folder laid out like
the shared AN4 data, LibriSpeech's dry run (sbatch scripts written, two shards labeled
locally, merged).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fixture_lines, write_manifest

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("support", "an4", "speechocean", "librispeech")


def _env() -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    return dict(os.environ, ASR_DISTILL=str(bin_dir / "asr-distill"), PYTHON=sys.executable)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    p = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600, **kwargs)
    assert p.returncode == 0, f"{args} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("recipe", RECIPES)
def test_run_sh_parses_and_documents_its_stages(recipe):
    script = REPO / "recipes" / recipe / "run.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    help_text = _run(["bash", str(script), "--help"]).stdout
    assert "Stages" in help_text and "--stage" in help_text
    readme = (REPO / "recipes" / recipe / "README.md").read_text()
    results = readme.split("## Results", 1)[1]
    assert "run.sh" in readme and "\n| " in results  # exact commands and a results table


CONFIGS = sorted(REPO.glob("recipes/*/config*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_configs_load(config, tmp_path):
    """Every recipe config passes the pipeline's own checks (a bad key fails here, not in a user's run)."""
    from asr_distill.pipeline.config import load_config

    cfg = load_config(config, out=str(tmp_path))
    assert cfg.name and cfg.label.teacher
    assert 0.0 <= cfg.export.wise_alpha <= 1.0


@pytest.mark.slow
def test_support_stages_0_1(tmp_path):
    out = tmp_path / "support"
    _run(
        [
            "bash",
            str(REPO / "recipes/support/run.sh"),
            "--size",
            "smoke",
            "--stop-stage",
            "1",
            "--out",
            str(out),
        ]
    )
    assert (out / "data" / ".done").is_file() and (out / "label" / ".done").is_file()
    train = _lines(out / "data" / "train" / "manifest.jsonl")
    labels = _lines(out / "label" / "labels.jsonl")
    assert len(train) == 6 and len(_lines(out / "data" / "test" / "manifest.jsonl")) == 3
    assert sorted(d["id"] for d in labels) == sorted(Path(d["audio_filepath"]).stem for d in train)
    assert all(d["text"].strip() and d["ref_text"] for d in labels)
    assert not (out / "filter").exists()  # --stop-stage 1 stops before the filter


def _corpus(folder: Path, pool: str) -> Path:
    """A corpus folder as the recipes expect: POOL.jsonl (the fixture clips) and test.jsonl (3)."""
    lines = fixture_lines()
    write_manifest(folder / f"{pool}.jsonl", lines)
    write_manifest(folder / "test.jsonl", lines[:3])
    return folder


@pytest.mark.slow
def test_an4_stages_0_1(tmp_path):
    an4 = _corpus(tmp_path / "an4_data", "train")  # laid out like ../shared/data/an4
    out = tmp_path / "an4"
    env_cmd = ["env", f"AN4_DIR={an4}", "bash", str(REPO / "recipes/an4/run.sh")]
    _run(env_cmd + ["--size", "smoke", "--stop-stage", "1", "--out", str(out)])
    assert len(_lines(out / "data" / "train.jsonl")) == 6  # smoke: the first 6 clips
    assert all(Path(d["audio_filepath"]).is_absolute() for d in _lines(out / "data" / "train.jsonl"))
    assert len(_lines(out / "label" / "labels.jsonl")) == 6
    assert (out / "label" / ".done").is_file()


@pytest.mark.parametrize("recipe, var", [("an4", "AN4_DIR"), ("speechocean", "SPEECHOCEAN_DIR")])
def test_stage_0_says_where_the_data_should_be(tmp_path, recipe, var):
    script = str(REPO / "recipes" / recipe / "run.sh")
    cmd = [
        "env",
        f"{var}={tmp_path / 'missing'}",
        "bash",
        script,
        "--stop-stage",
        "0",
        "--out",
        str(tmp_path / "o"),
    ]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and f"set {var}" in p.stderr


def test_speechocean_stage_0_copies_pool_and_test(tmp_path):
    corpus = _corpus(tmp_path / "so", "pool")  # laid out like ../shared/data/speechocean762
    lines = fixture_lines()
    out = tmp_path / "o"
    script = str(REPO / "recipes/speechocean/run.sh")
    _run(
        [
            "env",
            f"SPEECHOCEAN_DIR={corpus}",
            "bash",
            script,
            "--size",
            "smoke",
            "--stop-stage",
            "0",
            "--out",
            str(out),
        ]
    )
    train = _lines(out / "data" / "train.jsonl")
    assert len(train) == min(8, len(lines)) and len(_lines(out / "data" / "test.jsonl")) == 3
    assert all(Path(d["audio_filepath"]).is_file() for d in train)


def test_small_out_of_domain_sets_keep_small_sets_whole(tmp_path):
    """Small size: every 5th line of a big out-of-domain set, a small one (AN4 test's 130) whole."""
    sets = {}
    for name, n in (("big", 210), ("small", 12)):
        sets[name] = tmp_path / f"{name}.jsonl"
        write_manifest(
            sets[name], [{"audio_filepath": f"a{i}.wav", "duration": 1.0, "text": "x"} for i in range(n)]
        )
    out = tmp_path / "o"
    script = (
        f'set -euo pipefail; set -- --size small --stop-stage 0 --out "{out}"; '
        f'. "{REPO / "recipes" / "common.sh"}"; '
        f'prepare_ood big="{sets["big"]}" small="{sets["small"]}" absent="{tmp_path / "none.jsonl"}"'
    )
    p = _run(["bash", "-c", script])
    assert len(_lines(out / "data" / "ood" / "big.jsonl")) == 42
    assert len(_lines(out / "data" / "ood" / "small.jsonl")) == 12
    assert not (out / "data" / "ood" / "absent.jsonl").exists() and "absent" in p.stderr


@pytest.mark.slow
def test_librispeech_dry_run_writes_sbatch_and_labels_two_shards(tmp_path):
    out = tmp_path / "ls"
    _run(
        [
            "bash",
            str(REPO / "recipes/librispeech/run.sh"),
            "--dry-run",
            "--stop-stage",
            "2",
            "--out",
            str(out),
        ]
    )
    label = (out / "slurm" / "label.sbatch").read_text()
    assert "#SBATCH --array=0-1" in label and '--shard "${SLURM_ARRAY_TASK_ID}/2"' in label
    pipeline = (out / "slurm" / "pipeline.sbatch").read_text()
    assert "#SBATCH --gres=gpu:8" in pipeline and "--from filter" in pipeline
    shards = sorted((out / "label").glob("labels.shard*-of-00002.jsonl"))
    assert len(shards) == 2 and all(_lines(s) for s in shards)
    merged = _lines(out / "label" / "labels.jsonl")
    assert len(merged) == 8 == len({d["id"] for d in merged})
    train = _lines(out / "data" / "train.jsonl")
    assert train[0]["id"].count("-") == 2 and train[0]["text"] == train[0]["text"].lower()
    assert (out / "label" / ".done").is_file()
    ddp = (REPO / "recipes/librispeech/student_ddp.yaml").read_text()
    assert "strategy: ddp" in ddp and "precision: bf16-mixed" in ddp
