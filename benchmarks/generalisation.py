"""Generalisation across seeds: the support and speechocean recipes, 3 seeds each, against the bars.

    python benchmarks/generalisation.py                  # both recipes, seeds 0 1 2, small (hours on 2 cores)
    python benchmarks/generalisation.py --recipes support --seeds 0 --size smoke \
        --out-dir /tmp/generalisation --result /tmp/generalisation.json   # minutes: checks it works
    python benchmarks/generalisation.py --only-collect   # the JSON from the runs finished so far

Each recipe's data comes from its own ``run.sh --stage 0 --stop-stage 0`` once, into
``OUT_DIR/<recipe>-<size>/data`` (test set and out-of-domain sets are the same files for
every seed); each seed is the recipe's pipeline run in-process into
``OUT_DIR/<recipe>-<size>/seed<N>/`` up to its evaluate stage, with the student's
``seed_everything`` and ``data.seed`` (shuffling, augmentation) set to N. Every seed goes
through the pipeline's own resume: a stage that finished with the settings asked for now is
skipped, one whose settings changed (a recipe config edited since) runs again with all after it.

support: seed N's train calls are ``synth --seed 1 + 10 N`` (seed 0 is run.sh's own pool; the
test calls are ``--seed 2`` for every seed, so a train seed of 2 would train on the test
sentences). speechocean: the labels do not depend on the seed, so a finished label stage of
the same pool and label settings (``runs/recipes/speechocean-<size>``, or another seed's) is
reused through ``label.labels``. The out-of-domain sets are the recipes' own (run.sh stage 0).

Writes ``benchmarks/results/generalisation.json`` (WER in percent, format_insensitive):
``recipes.<recipe>.seeds[]`` (``{"seed", "sets": {set: {"teacher", "tiny_en", "student",
"p_student_vs_tiny_en", "p_student_vs_teacher"}}}``, each model ``{"wer", "ci", "insertions",
"insertion_rate"}``; p is the paired bootstrap's share of resamples in which the student is not
better, as ``evaluate`` prints it), ``summary`` (mean and sd over seeds), ``bars`` (each bar per
seed, with the numbers it used) and ``rows`` (the printed table).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from asr_distill.evaluate.artefacts import (
    HYPS_NAME,
    TIMING_NAME,
    decoding_inputs,
    load_transcription,
    model_folder,
)
from asr_distill.evaluate.sets import IN_DOMAIN
from asr_distill.jsonl import atomic_write_text
from asr_distill.pipeline import Paths, config_from_dict, eval_models, run, stage_seconds
from asr_distill.quality.calibrate import finite_for_json
from asr_distill.records import SIGNIFICANCE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RECIPES_DIR = ROOT / "recipes"
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
RECIPE_RUNS = ROOT / "runs" / "recipes"

RECIPES = ("support", "speechocean")
SEEDS = (0, 1, 2)
SIZES = {"smoke": "config_smoke.yaml", "small": "config_small.yaml", "full": "config.yaml"}
# pipeline sections a variant may change besides training, with an example for --help
STAGE_OVERRIDES = {
    "label": "pack_s=30",
    "filter": "normaliser=none",
    "export": "wise_alpha=0.5",
    "evaluate": "sets={speechocean762: DIR/test.jsonl}",
}
NORMALISER = "format_insensitive"
SUPPORT_TEST_SEED = 2  # run.sh: `synth --seed 2` makes the test calls
SUPPORT_TRAIN_SEED = 1  # run.sh: `synth --seed 1` makes the train calls (this benchmark's seed 0)
# the evaluate stage's model names -> this benchmark's keys
MODELS = {"teacher": "teacher", "tiny_en": "tiny.en", "student": "student"}
SPEECHOCEAN_RATIO = 0.85  # speechocean762 test: student WER <= 0.85 x tiny.en's
OOD_MAX_DELTA = 0.3  # out of domain: the student at most 0.3 points worse than tiny.en
_MAX_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}:\d{2}$")

log = logging.getLogger("generalisation")


# --- where each seed's data and run live ----------------------------------------------------------


def synth_seed(seed: int) -> int:
    """The support train pool's ``synth --seed`` for benchmark seed ``seed``; never the test calls' seed.

    Seed 0 is run.sh's own pool, so its data is the recipe's.
    """
    s = SUPPORT_TRAIN_SEED + 10 * seed
    if s == SUPPORT_TEST_SEED:
        raise ValueError(f"seed {seed}: synthesis seed {s} would make the train calls the test calls")
    return s


def seed_dir(root: Path, seed: int, variant: str | None = None) -> Path:
    """One seed's pipeline run root (a variant's seeds beside the recipe's own: ``<variant>-seed<N>``)."""
    return root / (f"{variant}-seed{seed}" if variant else f"seed{seed}")


def pool_path(recipe: str, root: Path, seed: int) -> Path:
    """One seed's unlabeled pool: speechocean's is shared, support's is synthesised per seed."""
    if recipe == "speechocean":
        return root / "data" / "train.jsonl"
    if synth_seed(seed) == SUPPORT_TRAIN_SEED:
        return root / "data" / "train" / "manifest.jsonl"
    return seed_dir(root, seed) / "data" / "train" / "manifest.jsonl"


def seed_done(run_dir: Path) -> bool:
    """Whether the seed's evaluate stage finished (its marker and the summary it wrote)."""
    return (run_dir / "evaluate" / ".done").is_file() and (run_dir / "eval" / "summary.json").is_file()


# the stages an export or evaluation variant shares with the run it was trained in
TRAINED_STAGES = ("label", "filter", "review", "train")
FEATURE_CACHE = "feature_cache"  # the train stage's cache of encoder outputs (configs' data.cache_dir)


def copy_training(src: Path, dst: Path) -> list[str]:
    """Copy ``src``'s finished stages up to training into ``dst``, a variant seed not yet run.

    A variant that changes only the export (another WiSE-FT mix) or the evaluation then resumes
    after the training it shares instead of repeating it: the pipeline's own resume checks each
    copied stage's settings against the variant's config, so a stage that differs (another
    filter, other train overrides) runs again with all after it, starting from the encoder
    features already cached. Those are hard-linked (the cache only ever adds files, atomically);
    everything else is copied, since a rerun appends to its log and rewrites checkpoints in place.

    Returns:
        The stage folders copied; none when ``dst`` has a stage of its own already.
    """
    if any((dst / stage).exists() for stage in TRAINED_STAGES):
        return []

    def place(a: str, b: str) -> object:
        return os.link(a, b) if FEATURE_CACHE in Path(a).relative_to(src).parts else shutil.copy2(a, b)

    copied = []
    for stage in TRAINED_STAGES:
        if (src / stage / ".done").is_file():
            shutil.copytree(src / stage, dst / stage, copy_function=place, symlinks=True)
            copied.append(stage)
    return copied


def training_differences(donor: Path, cfg: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Train settings (overrides, members) where ``cfg`` and the donor run's recorded config differ.

    A variant that only changes the export, started ``--train-from`` another variant, would
    otherwise train again from the labels with the recipe's settings and report that training
    under the variant's name; the caller refuses it instead.
    """
    recorded = json.loads((donor / "pipeline_config.json").read_text())["train"]
    ours = dict(cfg.get("train") or {})
    theirs = {**recorded.get("overrides", {}), "members": recorded.get("members", 1)}
    mine = {**ours.get("overrides", {}), "members": ours.get("members", 1)}
    return {
        k: (theirs.get(k), mine.get(k))
        for k in sorted(theirs.keys() | mine.keys())
        if theirs.get(k) != mine.get(k)
    }


def prepare_data(recipe: str, size: str, root: Path) -> None:
    """Stage 0 of the recipe's run.sh (skipped there when done): pool, test and out-of-domain sets."""
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)
    env.setdefault("SHARED_DATA", str(SHARED_DATA))
    env.setdefault("SPEECHOCEAN_DIR", str(SHARED_DATA / "speechocean762"))
    cmd = ["bash", str(RECIPES_DIR / recipe / "run.sh"), "--size", size, "--out", str(root)]
    subprocess.run([*cmd, "--stage", "0", "--stop-stage", "0"], check=True, env=env)


def ensure_pool(recipe: str, root: Path, seed: int) -> Path:
    """The seed's pool, synthesising support's train calls (as many as run.sh's) when they are not there."""
    pool = pool_path(recipe, root, seed)
    if recipe == "support" and not pool.is_file():
        recipe_pool = pool_path(recipe, root, 0)
        n = sum(1 for line in recipe_pool.read_text(encoding="utf-8").splitlines() if line.strip())
        s = synth_seed(seed)
        log.info("seed %d: synthesising %d train calls with seed %d", seed, n, s)
        cli = [sys.executable, "-m", "asr_distill.cli", "synth"]
        subprocess.run([*cli, "--n", str(n), "--seed", str(s), "--out", str(pool.parent)], check=True)
    return pool


def _label_settings(label: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in label.items() if k not in ("labels", "second_labels")}


def reusable_labels(cfg: Mapping[str, Any], base_dir: Path, candidates: Sequence[Path]) -> dict[str, str]:
    """``label.labels`` (and ``second_labels``) of a finished run that labeled the same pool the same way.

    A candidate counts when its label stage finished, its label files exist (its own, or the
    ones it reused in turn), its label settings equal ``cfg``'s and its pool manifest has the
    same bytes as ``cfg``'s.

    Args:
        cfg: the pipeline config about to run (``out`` set), before ``config_from_dict``.
        base_dir: the folder its relative paths are read against (the recipe's).
        candidates: run roots to look in, in order of preference.

    Returns:
        The label keys to add to ``cfg["label"]``; empty when no candidate fits.
    """
    ours = config_from_dict(cfg, base_dir=base_dir)
    pool = Path(ours.data.train).read_bytes()
    want = _label_settings(json.loads(json.dumps(asdict(ours.label))))
    for c in candidates:
        saved = c / "pipeline_config.json"
        if (
            Path(c).resolve() == Path(ours.out)
            or not (c / "label" / ".done").is_file()
            or not saved.is_file()
        ):
            continue
        theirs = json.loads(saved.read_text(encoding="utf-8"))
        labels, second = c / "label" / "labels.jsonl", c / "label" / "second.jsonl"
        if not labels.is_file():  # it reused another run's labels: those files, while they exist
            named = theirs["label"]
            labels = Path(named.get("labels") or labels)
            second = Path(named.get("second_labels") or second)
        their_pool = Path(theirs["data"]["train"])
        if _label_settings(theirs["label"]) != want or not labels.is_file():
            continue
        if ours.label.second and not second.is_file():
            continue
        if not their_pool.is_file() or their_pool.read_bytes() != pool:
            continue
        out = {"labels": str(labels)}
        return out | ({"second_labels": str(second)} if ours.label.second else {})
    return {}


def _evaluation_settings(saved: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a baseline's hypotheses: the teacher and the evaluate settings, sets aside."""
    evaluate = {k: v for k, v in saved["evaluate"].items() if k != "sets"}
    return {"teacher": saved["label"]["teacher"], "evaluate": evaluate}


def reuse_baselines(cfg: Mapping[str, Any], base_dir: Path, candidates: Sequence[Path]) -> list[Path]:
    """Copy the teacher's and tiny.en's saved hypotheses from finished runs that decoded the same sets.

    Only the student differs between seeds; the teacher and tiny.en decode the same test sets
    with the same options in each (greedy, seeded fallback), so decoding them again per seed
    costs the most and measures nothing new. A candidate's decoding of a set counts when its
    evaluate settings and teacher equal ``cfg``'s and it was made from the inputs the evaluate
    stage will check (``decoding_inputs``: the set's bytes, the model, the options), so a set
    file rewritten since is not reused. A folder already holding hypotheses of these inputs is
    left alone; one holding others' is replaced. Their speed figures are the donor's.

    Returns:
        The evaluation folders filled.
    """
    ours = config_from_dict(cfg, base_dir=base_dir)
    want = _evaluation_settings(json.loads(json.dumps(asdict(ours))))
    our_sets = {IN_DOMAIN: ours.data.test, **ours.evaluate.sets}
    specs = dict(eval_models(Paths(ours)))  # what the evaluate stage will decode, by name
    decoding = ours.evaluate.decoding()
    filled: list[Path] = []
    for c in candidates:
        saved = c / "pipeline_config.json"
        if Path(c).resolve() == Path(ours.out) or not saved.is_file():
            continue
        if _evaluation_settings(json.loads(saved.read_text(encoding="utf-8"))) != want:
            continue
        for name, path in our_sets.items():
            if not Path(path).is_file():
                continue
            for model in ("teacher", "tiny.en"):
                src = model_folder(c / "eval", model, name)
                dst = model_folder(Path(ours.out) / "eval", model, name)
                # the same digest the evaluate stage checks: the same set bytes, model and options
                inputs = decoding_inputs(specs[model], path, decoding.options.get(model), decoding.backend)
                if load_transcription(src, inputs) is None or load_transcription(dst, inputs) is not None:
                    continue
                dst.mkdir(parents=True, exist_ok=True)  # hypotheses of other inputs there are replaced
                for f in (HYPS_NAME, TIMING_NAME):  # timing last: its presence means the set is whole
                    atomic_write_text(dst / f, (src / f).read_text(encoding="utf-8"))
                filled.append(dst)
    return filled


def pipeline_config(
    recipe: str,
    size: str,
    root: Path,
    seed: int,
    max_time: str | None = None,
    variant: str | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    stage_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The recipe's config for one seed: shared test and out-of-domain sets, the seed's pool and seeds.

    ``{out}`` in the recipe's paths is the shared data root (run.sh's ``--out``); the run
    itself writes to ``seed<N>/`` (``<variant>-seed<N>/`` for a variant, whose
    ``train_overrides`` and ``stage_overrides``, ``{"label" | "filter" | "export" | "evaluate":
    {key: value}}``, go on top of the recipe's). An evaluate override's ``sets`` add to or replace
    the recipe's sets by name (``{out}`` allowed), so a variant can score the same students on a
    bigger test set; its normaliser is the bars' and stays. tiny.en is always evaluated (the bars
    compare with it).
    """
    cfg = yaml.safe_load((RECIPES_DIR / recipe / SIZES[size]).read_text(encoding="utf-8"))
    shared = str(root.resolve())
    cfg["name"] = f"{cfg.get('name', recipe)}-seed{seed}"
    cfg["out"] = str(seed_dir(root, seed, variant).resolve())
    test = str(cfg["data"]["test"]).replace("{out}", shared)
    cfg["data"] = cfg["data"] | {"train": str(pool_path(recipe, root, seed).resolve()), "test": test}
    stage_overrides = {stage: dict(settings) for stage, settings in (stage_overrides or {}).items()}
    evaluate = dict(cfg.get("evaluate") or {})
    evaluate_changes = stage_overrides.get("evaluate", {})
    more_sets = evaluate_changes.pop("sets", None) or {}
    if "normaliser" in evaluate_changes:
        raise ValueError(f"the bars use the {NORMALISER} normaliser; an evaluate override cannot change it")
    sets = {k: str(v).replace("{out}", shared) for k, v in ((evaluate.get("sets") or {}) | more_sets).items()}
    models = dict(evaluate.get("models") or {})
    models.setdefault("tiny.en", "tiny.en")
    cfg["evaluate"] = evaluate | {"sets": sets, "models": models, "normaliser": NORMALISER}
    train = dict(cfg.get("train") or {})
    overrides = dict(train.get("overrides") or {}) | dict(train_overrides or {})
    overrides |= {"seed_everything": seed, "data.seed": seed}
    if max_time is not None:
        overrides["trainer.max_time"] = max_time
    cfg["train"] = train | {"overrides": overrides}
    sections = (*STAGE_OVERRIDES, "train")  # train: its section's own keys (--members)
    for stage, settings in stage_overrides.items():
        if stage not in sections:
            raise ValueError(f"stage overrides are for {', '.join(sections)}, not {stage!r}")
        cfg[stage] = dict(cfg.get(stage) or {}) | dict(settings)
    return cfg


def run_seed(
    recipe: str,
    size: str,
    root: Path,
    seed: int,
    max_time: str | None,
    seeds: Sequence[int],
    variant: str | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    stage_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One seed's pipeline up to evaluation (resumes per stage); speechocean reuses finished labels."""
    ensure_pool(recipe, root, seed)
    cfg = pipeline_config(recipe, size, root, seed, max_time, variant, train_overrides, stage_overrides)
    base = RECIPES_DIR / recipe
    donors = [RECIPE_RUNS / f"{recipe}-{size}"] + [seed_dir(root, s) for s in seeds]
    donors += [seed_dir(root, s, variant) for s in seeds if variant]
    if recipe == "speechocean":
        reused = reusable_labels(cfg, base, donors)
        if reused:
            log.info("seed %d: reusing the labels in %s", seed, Path(reused["labels"]).parent)
            cfg["label"] = dict(cfg.get("label") or {}) | reused
    log.info("%s seed %d: running %s", recipe, seed, cfg["out"])
    config = config_from_dict(cfg, base_dir=base)
    # up to the export first: an evaluate stage that runs after its upstream in one call clears
    # its folder (it must not keep an old student's hypotheses), and the baselines go there
    run(config, stop="export")
    for folder in reuse_baselines(cfg, base, donors):
        log.info("seed %d: reusing the baseline hypotheses in %s", seed, folder)
    run(config, stop="evaluate")


# --- what a finished seed measured ----------------------------------------------------------------


def model_figures(result: Mapping[str, Any]) -> dict[str, Any]:
    """One model's ``result.json`` figures as the issue names them (WER and insertion rate in percent)."""
    score = result["score"]
    return {
        "wer": round(result["wer"], 4),
        "ci": [round(result["ci"]["low"], 4), round(result["ci"]["high"], 4)],
        "insertions": score["insertions"],
        "insertion_rate": round(100.0 * score["insertions"] / max(score["ref_words"], 1), 4),
    }


def p_value(comparisons: Sequence[Mapping[str, Any]], a: str, b: str) -> float | None:
    """The paired bootstrap's p that ``a`` is not better than ``b``, as the evaluate stage found it."""
    return next((c["p_value"] for c in comparisons if c["a"] == a and c["b"] == b), None)


def set_figures(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """One set of the evaluate stage's ``summary.json``: the three models and the student's p values."""
    by_name = {m["model"]: m for m in evaluation["models"]}
    out: dict[str, Any] = {
        key: model_figures(by_name[name]) if name in by_name else None for key, name in MODELS.items()
    }
    comparisons = evaluation["comparisons"]
    out["p_student_vs_tiny_en"] = p_value(comparisons, "student", "tiny.en")
    out["p_student_vs_teacher"] = p_value(comparisons, "student", "teacher")
    return out


def seed_result(summary: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """One seed's evaluate-stage ``summary.json`` as ``{"seed", "sets": {name: SET}, "skipped_sets"}``."""
    sets = summary.get("sets") or {"in_domain": summary}
    normalisers = {s["normaliser"] for s in sets.values()}
    if normalisers != {NORMALISER}:
        raise ValueError(f"seed {seed} was scored with {sorted(normalisers)}, the bars need {NORMALISER}")
    return {
        "seed": seed,
        "sets": {name: set_figures(s) for name, s in sets.items()},
        "skipped_sets": dict(summary.get("skipped_sets") or {}),
    }


def collect_seed(run_dir: Path, recipe: str, seed: int) -> dict[str, Any]:
    """A finished seed's figures, with the seeds and labels it ran with and each stage's seconds."""
    out = seed_result(json.loads((run_dir / "eval" / "summary.json").read_text(encoding="utf-8")), seed)
    saved = run_dir / "pipeline_config.json"
    cfg = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    overrides = (cfg.get("train") or {}).get("overrides") or {}
    return out | {
        "train_seed": overrides.get("seed_everything"),
        "synth_seed": synth_seed(seed) if recipe == "support" else None,
        "max_time": overrides.get("trainer.max_time"),
        "pool": (cfg.get("data") or {}).get("train"),
        "labels_from": (cfg.get("label") or {}).get("labels"),
        "stage_seconds": stage_seconds(run_dir),
        "run": str(run_dir),
    }


def against_recipe(variant_dir: Path, recipe_dir: Path) -> dict[str, Any]:
    """The variant's student against the recipe's own student of the same seed, set by set.

    Paired bootstrap over utterances (``evaluate``'s): ``p`` is the one-sided p that the
    variant is not better, so p > 0.95 means significantly worse. Sets either side lacks, and
    sets the two decoded from other utterances (a variant scored on a bigger test set), are
    left out; an empty dict when the recipe's seed has not run.
    """
    from asr_distill.evaluate.bootstrap import paired_bootstrap
    from asr_distill.evaluate.scoring import score_utterances

    out = {}
    for folder in sorted((variant_dir / "eval").glob("student*")):
        name = folder.name.partition("@")[2] or IN_DOMAIN
        ours, theirs = load_transcription(folder), load_transcription(recipe_dir / "eval" / folder.name)
        if ours is None or theirs is None or sorted(ours.ids) != sorted(theirs.ids):
            continue
        a, b = (
            score_utterances(t.refs, t.hyps, NORMALISER, ids=t.ids, durations=t.durations)
            for t in (ours, theirs)
        )
        c = paired_bootstrap(a, b, names=("variant", "recipe"), normaliser=NORMALISER)
        out[name] = {"variant": round(c.wer_a, 3), "recipe": round(c.wer_b, 3), "p": round(c.p_value, 3)}
    return out


# --- mean and sd over seeds -----------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (None below 2 values) of ``values``."""
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    sd = round(statistics.stdev(values), 4) if len(values) > 1 else None
    return {"mean": round(statistics.fmean(values), 4), "sd": sd, "n": len(values)}


def summarise(seeds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per set: each model's WER, and the student's gap to tiny.en, as mean and sd over the seeds."""
    names = [n for s in seeds for n in s["sets"]]
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        sets = [s["sets"][name] for s in seeds if name in s["sets"]]
        out[name] = {key: mean_sd([x[key]["wer"] for x in sets if x[key]]) for key in MODELS}
        gaps = [x["student"]["wer"] - x["tiny_en"]["wer"] for x in sets if x["student"] and x["tiny_en"]]
        out[name]["student_minus_tiny_en"] = mean_sd(gaps)
    return out


# --- the bars ---------------------------------------------------------------------------------------


def _figures(s: Mapping[str, Any]) -> tuple[float, float, float] | None:
    if not all(s.get(k) for k in MODELS):
        return None
    return s["student"]["wer"], s["tiny_en"]["wer"], s["teacher"]["wer"]


def speechocean_in_domain(s: Mapping[str, Any]) -> dict[str, Any]:
    """Student WER <= 0.85 x tiny.en's and <= the teacher's, significantly better than tiny.en."""
    f, p = _figures(s), s.get("p_student_vs_tiny_en")
    if f is None or p is None:
        return {"pass": False, "missing": "a model or the comparison with tiny.en"}
    student, tiny, teacher = f
    ratio = student / tiny if tiny > 0 else math.inf
    return {
        "pass": student <= SPEECHOCEAN_RATIO * tiny and student <= teacher and p < SIGNIFICANCE,
        "student": student,
        "tiny_en": tiny,
        "teacher": teacher,
        "ratio_to_tiny_en": round(ratio, 4),
        "p_student_vs_tiny_en": p,
    }


def support_in_domain(s: Mapping[str, Any]) -> dict[str, Any]:
    """Student WER below the teacher's and tiny.en's, each significantly (p < 0.05)."""
    f, p_tiny, p_teacher = _figures(s), s.get("p_student_vs_tiny_en"), s.get("p_student_vs_teacher")
    if f is None or p_tiny is None or p_teacher is None:
        return {"pass": False, "missing": "a model or a comparison"}
    student, tiny, teacher = f
    better = student < tiny and student < teacher and p_tiny < SIGNIFICANCE and p_teacher < SIGNIFICANCE
    return {
        "pass": better,
        "student": student,
        "tiny_en": tiny,
        "teacher": teacher,
        "p_student_vs_tiny_en": p_tiny,
        "p_student_vs_teacher": p_teacher,
    }


def out_of_domain(s: Mapping[str, Any]) -> dict[str, Any]:
    """Not significantly worse than tiny.en, at most 0.3 points worse, no more insertions than tiny.en.

    Significantly worse is a higher WER with p > 0.95, as ``evaluate`` flags a regression
    (p alone is 1 when the two decode alike: "not better" counts ties).
    """
    f, p = _figures(s), s.get("p_student_vs_tiny_en")
    if f is None or p is None:
        return {"pass": False, "missing": "a model or the comparison with tiny.en"}
    student, tiny, _ = f
    delta = round(student - tiny, 4)
    worse = delta > 0 and 1.0 - p < SIGNIFICANCE
    ins, ins_tiny = s["student"]["insertions"], s["tiny_en"]["insertions"]
    return {
        "pass": not worse and delta <= OOD_MAX_DELTA and ins <= ins_tiny,
        "significantly_worse": worse,
        "delta_vs_tiny_en": delta,
        "p_student_vs_tiny_en": p,
        "insertions": ins,
        "insertions_tiny_en": ins_tiny,
    }


@dataclass(frozen=True)
class Bar:
    """One bar of the issue: a check of one test set, met in at least ``share`` of the seeds."""

    set: str
    rule: str
    check: Callable[[Mapping[str, Any]], dict[str, Any]]
    share: float = 1.0


_OOD_RULE = "student not significantly worse than tiny.en, <= 0.3 points worse, insertions <= tiny.en's"
BARS: dict[str, tuple[Bar, ...]] = {
    "speechocean": (
        Bar(
            "in_domain",
            "student <= 0.85 x tiny.en and <= teacher, p vs tiny.en < 0.05",
            speechocean_in_domain,
        ),
        Bar("an4", _OOD_RULE, out_of_domain),
    ),
    "support": (
        Bar(
            "in_domain",
            "student better than teacher and tiny.en, p < 0.05, in 2 of 3 seeds",
            support_in_domain,
            2 / 3,
        ),
        Bar("an4", _OOD_RULE, out_of_domain),
        Bar("speechocean762", _OOD_RULE, out_of_domain),
    ),
}


def check_bar(bar: Bar, seeds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``bar`` on every seed that measured its set; None when none did."""
    per_seed = [{"seed": s["seed"], **bar.check(s["sets"][bar.set])} for s in seeds if bar.set in s["sets"]]
    if not per_seed:
        return {"rule": bar.rule, "pass": None, "why": f"no seed measured {bar.set}", "per_seed": []}
    needed = math.ceil(bar.share * len(per_seed) - 1e-9)
    passed = sum(1 for r in per_seed if r["pass"])
    return {
        "rule": bar.rule,
        "pass": passed >= needed,
        "seeds_passed": passed,
        "seeds_needed": needed,
        "per_seed": per_seed,
    }


def check_bars(recipes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every bar of every recipe measured; ``pass`` is True only when each of them passed.

    ``main`` sets ``pass`` to None while some seed asked for has not finished.
    """
    out: dict[str, Any] = {}
    for recipe, r in recipes.items():
        out[recipe] = {bar.set: check_bar(bar, r["seeds"]) for bar in BARS[recipe]}
    verdicts = [b["pass"] for r in out.values() for b in r.values()]
    return {"pass": bool(verdicts) and all(v is True for v in verdicts)} | out


# --- the table ----------------------------------------------------------------------------------------


def _wer(m: Mapping[str, Any] | None) -> float | None:
    return m["wer"] if m else None


def _pm(ms: Mapping[str, Any]) -> str:
    if ms["mean"] is None:
        return "-"
    return f"{ms['mean']:.2f}" + (f" ± {ms['sd']:.2f}" if ms["sd"] is not None else "")


def table_rows(recipes: Mapping[str, Mapping[str, Any]], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per recipe, set and seed, then the set's mean ± sd: the printed table and ``rows``."""
    rows = []
    for recipe, r in recipes.items():
        for name, stats in summary.get(recipe, {}).items():
            for s in r["seeds"]:
                x = s["sets"].get(name)
                if x is None:
                    continue
                rows.append(
                    {
                        "recipe": recipe,
                        "set": name,
                        "seed": s["seed"],
                        "teacher": _wer(x["teacher"]),
                        "tiny_en": _wer(x["tiny_en"]),
                        "student": _wer(x["student"]),
                        "p_student_vs_tiny_en": x["p_student_vs_tiny_en"],
                        "p_student_vs_teacher": x["p_student_vs_teacher"],
                        "ins_student": x["student"]["insertions"] if x["student"] else None,
                        "ins_tiny_en": x["tiny_en"]["insertions"] if x["tiny_en"] else None,
                    }
                )
            mean = {k: _pm(stats[k]) for k in MODELS}
            rows.append({"recipe": recipe, "set": name, "seed": "mean ± sd", **mean})
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as an aligned text table (WER in percent)."""
    cols = ["recipe", "set", "seed", "teacher", "tiny_en", "student", "p_student_vs_tiny_en"]
    cols += ["p_student_vs_teacher", "ins_student", "ins_tiny_en"]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells)
    return "\n".join(lines)


def format_bars(bars: Mapping[str, Any]) -> str:
    """One line per bar: PASS, FAIL or n/a, and the seeds that met it."""
    lines = []
    for recipe, r in bars.items():
        if recipe == "pass":
            continue
        for name, b in r.items():
            verdict = {True: "PASS", False: "FAIL", None: "n/a"}[b["pass"]]
            met = (
                f" ({b['seeds_passed']}/{len(b['per_seed'])} seeds, need {b['seeds_needed']})"
                if b["per_seed"]
                else ""
            )
            lines.append(f"{verdict}  {recipe} {name}: {b['rule']}{met}")
    overall = {True: "PASS", False: "not met", None: "undecided (not every seed finished)"}[bars["pass"]]
    lines.append(f"all bars: {overall}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine the seeds trained on (CPU, torch, load)."""
    from asr_distill.teacher.precision import machine as cpu_machine

    return cpu_machine() | {
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def parse_overrides(items: Sequence[str], flag: str = "--train-override") -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as YAML (``1.0`` a number, ``[a, b]`` a list)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _max_time(value: str) -> str:
    if not _MAX_TIME.match(value):
        raise argparse.ArgumentTypeError(f"--max-time {value!r}: expected DD:HH:MM:SS")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--size", choices=list(SIZES), default="small")
    ap.add_argument("--max-time", type=_max_time, default=None, help="training budget DD:HH:MM:SS per seed")
    ap.add_argument(
        "--only-collect", action="store_true", help="write the JSON from finished seeds, run nothing"
    )
    ap.add_argument("--out-dir", default=str(ROOT / "runs" / "generalisation"))
    ap.add_argument(
        "--result", default=None, help="default: results/generalisation[_RECIPE...][_VARIANT].json"
    )
    ap.add_argument(
        "--variant",
        default=None,
        help="name a training variant: its seeds run beside the recipe's (VARIANT-seedN/)",
    )
    ap.add_argument(
        "--train-from",
        default=None,
        metavar="VARIANT",
        help="start each seed not yet run from this variant's finished seed (\"recipe\": the recipe's): "
        "an export variant does not train again, another training starts from the same labels",
    )
    ap.add_argument(
        "--compare-to",
        default=None,
        metavar="VARIANT",
        help="the run each variant seed is paired with in vs_recipe (default: the recipe's own seed); "
        "name the variant a recipe now ships when its seedN folders hold an older setting",
    )
    ap.add_argument(
        "--train-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the variant's train override (YAML value), e.g. model.lwf_weight=1.0; repeatable",
    )
    ap.add_argument(
        "--members",
        type=int,
        default=1,
        metavar="K",
        help="the variant trains K students per seed and exports their average (train.members)",
    )
    for stage, example in STAGE_OVERRIDES.items():
        ap.add_argument(
            f"--{stage}-override",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"the variant's {stage} setting (YAML value), e.g. {example}; repeatable",
        )
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.train_override)
    stages = {
        stage: parsed
        for stage in STAGE_OVERRIDES
        if (parsed := parse_overrides(getattr(args, f"{stage}_override"), f"--{stage}-override"))
    }
    if args.members != 1:
        stages["train"] = {"members": args.members}
    if (overrides or stages) and not args.variant:
        ap.error("an override needs --variant (the recipe's own seeds keep the recipe's settings)")
    if args.result is None:  # a run of some recipes does not replace the file of all of them
        subset = "" if set(args.recipes) == set(RECIPES) else "_" + "_".join(args.recipes)
        variant = f"_{args.variant}" if args.variant else ""
        args.result = str(RESULTS / f"generalisation{subset}{variant}.json")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.time()
    recipes: dict[str, dict[str, Any]] = {}
    missing = []
    export_variant = stages and not (overrides or "train" in stages)  # shares its donor's training
    for recipe in args.recipes:
        root = Path(args.out_dir).resolve() / f"{recipe}-{args.size}"  # donors stay valid from any config dir
        if args.train_from not in (None, "recipe") and export_variant and not args.only_collect:
            for seed in args.seeds:  # a variant of later stages: it must share the donor's training
                donor = seed_dir(root, seed, args.train_from)
                cfg = pipeline_config(
                    recipe, args.size, root, seed, args.max_time, args.variant, None, stages
                )
                if (donor / "pipeline_config.json").is_file() and (diff := training_differences(donor, cfg)):
                    ap.error(
                        f"--train-from {args.train_from}: its training differs from this variant's "
                        f"({', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in diff.items())}); "
                        "repeat its --train-override/--members, or this seed would train again"
                    )
        if not args.only_collect:
            prepare_data(recipe, args.size, root)
        seeds = []
        for seed in args.seeds:
            d = seed_dir(root, seed, args.variant)
            if args.train_from and not args.only_collect:
                src = seed_dir(root, seed, None if args.train_from == "recipe" else args.train_from)
                if copied := copy_training(src, d):
                    log.info("seed %d: %s copied from %s", seed, ", ".join(copied), src)
            if not args.only_collect:
                run_seed(
                    recipe, args.size, root, seed, args.max_time, args.seeds, args.variant, overrides, stages
                )
            if seed_done(d):
                seeds.append(collect_seed(d, recipe, seed))
                if args.variant:
                    seeds[-1]["vs_recipe"] = against_recipe(d, seed_dir(root, seed, args.compare_to))
            else:
                missing.append(f"{recipe} seed {seed}")
        recipes[recipe] = {"seeds": seeds}
    summary = {recipe: summarise(r["seeds"]) for recipe, r in recipes.items()}
    bars = check_bars(recipes)
    if missing:  # the bars are on every seed asked for
        bars["pass"] = None
    rows = table_rows(recipes, summary)
    out = {
        "benchmark": "generalisation",
        "normaliser": NORMALISER,
        "size": args.size,
        "variant": {"name": args.variant, "train_overrides": overrides}
        | {f"{stage}_overrides": stages.get(stage, {}) for stage in STAGE_OVERRIDES}
        if args.variant
        else None,
        "seeds": args.seeds,
        "compared_to": (args.compare_to or "recipe") if args.variant else None,
        "missing": missing,
        "recipes": recipes,
        "summary": summary,
        "bars": bars,
        "rows": rows,
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": machine(),
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(args.result, json.dumps(finite_for_json(out), indent=1, allow_nan=False) + "\n")
    print(format_table(rows))
    print()
    for recipe, r in recipes.items():
        for sd in r["seeds"]:
            for name, c in (sd.get("vs_recipe") or {}).items():
                print(
                    f"{args.variant} vs {args.compare_to or 'recipe'}, {recipe} seed {sd['seed']} {name}: "
                    f"{c['variant']:.2f} vs {c['recipe']:.2f} (p variant not better {c['p']:.3f})"
                )
    print()
    print(format_bars(bars))
    if missing:
        print(f"not finished: {', '.join(missing)}")
    print(f"-> {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
