"""Iterative rounds on speechocean762: does a student's vote improve the next student's labels?

    python benchmarks/rounds.py                      # 3 rounds, the whole pool (hours on 2 cores)
    python benchmarks/rounds.py --small              # every 4th pool clip, the small recipe's settings
    python benchmarks/rounds.py --small --seed 1 --out-dir runs/rounds/speechocean762-small-seed1 \
        --result benchmarks/results/rounds_seed1.json  # the same rounds, another training seed
    python benchmarks/rounds.py --summarise benchmarks/results/rounds.json \
        benchmarks/results/rounds_seed[1-9].json   # the seeds side by side: rounds_seeds.json
    python benchmarks/rounds.py --smoke --first 8 --test-first 4 --ood-first 3 \
        --out-dir /tmp/rounds_smoke --result /tmp/rounds_smoke.json   # minutes: checks it works

The pipeline runs with ``rounds: 3`` on the speechocean762 pool (its transcripts only
measure), from ``recipes/speechocean/config.yaml`` (``--smoke``: ``config_smoke.yaml``).
Students are evaluated on speechocean762 test and, out of domain, on AN4 test. The filter's
score is ``consensus_agreement`` at a fixed, reference-free threshold (:data:`THRESHOLD`),
so each round's student labels move the vote. ``rounds_patience`` is 2 so all three rounds
run; ``rounds.json`` in the run still says whether the early-stop rule would have ended
them sooner (``would_stop_after``).

Labels made by a finished ``runs/recipes/speechocean-full`` label stage (base + tiny.en)
are reused for the whole pool, and ``runs/recipes/speechocean-small``'s for ``--small`` (when
its pool has the same bytes); a subset (``--first``) is labeled in the run.

Writes ``benchmarks/results/rounds.json``: ``{"rounds": [{"label_wer_kept", "retention",
"student_wer", "p_vs_previous", "ood_wer", ...}, ...]}`` (WER in percent,
format_insensitive; ``p_vs_previous``: the paired bootstrap of the student against the
round before it on the test set). ``--summarise`` reads several seeds' result files and writes
``rounds_seeds.json``: per round the mean and sd over seeds, how many seeds' bootstraps call the
round better or worse than the one before, and a paired t-test over seeds of each round against
the first (the bootstrap measures test-set sampling; the seeds measure training noise).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from asr_distill.jsonl import atomic_write_text
from asr_distill.pipeline import config_from_dict, run, stop_reason
from asr_distill.quality.calibrate import finite_for_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import mean_sd  # noqa: E402  (mean and sd over seeds, one definition)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
RECIPE = ROOT / "recipes" / "speechocean"
FULL_LABELS = ROOT / "runs" / "recipes" / "speechocean-full" / "label"
SMALL_RUN = ROOT / "runs" / "recipes" / "speechocean-small"
SMALL_EVERY = 4  # recipes/speechocean/run.sh --size small: every 4th pool clip
ROUNDS = 3
PATIENCE = 2  # with 3 rounds, every round runs; the 1-round-patience verdict is recorded beside
# consensus_agreement >= 0.8: on average four in five other decodings agree with each teacher word
# (with tiny.en alone: 80% of the teacher's words heard the same). Chosen before looking at any WER.
THRESHOLD = 0.8
SCORE = "consensus_agreement"


def subset(src: Path, out: Path, first: int | None, every: int | None = None) -> Path:
    """``src`` with absolute audio paths (its first lines, or every k-th), as the recipes copy manifests."""
    if not src.is_file():
        raise SystemExit(f"{src} not found: the speechocean762 and AN4 data sit beside the checkout")
    tool = ROOT / "recipes" / "tools" / "manifest_subset.py"
    extra = ["--first", str(first)] if first else (["--every", str(every)] if every else [])
    if not out.is_file():
        subprocess.run([sys.executable, str(tool), str(src), str(out), *extra], check=True)
    return out


def recipe_labels(args: argparse.Namespace, pool: Path) -> Path | None:
    """A finished recipe label stage of this pool: the full recipe's, or with ``--small`` the small one's.

    With ``--small``, the recipe run's own label stage, else a finished one of the generalisation
    benchmark's seeds run there (``seed<N>/label``: the same pool and label settings).
    """
    if args.first:
        return None
    if args.small:
        data = SMALL_RUN / "data" / "train.jsonl"
        if not (data.is_file() and data.read_bytes() == pool.read_bytes()):
            return None
        stages = [SMALL_RUN / "label", *sorted(SMALL_RUN.glob("seed*/label"))]
        return next((label for label in stages if (label / ".done").is_file()), None)
    return FULL_LABELS if (FULL_LABELS / ".done").is_file() else None


def pipeline_config(args: argparse.Namespace) -> dict:
    """The recipe's config with this benchmark's data, rounds, filter rule and out-of-domain set."""
    recipe = RECIPE / (
        "config_smoke.yaml" if args.smoke else "config_small.yaml" if args.small else "config.yaml"
    )
    cfg = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    data = Path(args.out_dir) / "data"
    so, an4 = SHARED_DATA / "speechocean762", SHARED_DATA / "an4"
    cfg["out"] = str(Path(args.out_dir).resolve())
    cfg["data"] = cfg["data"] | {
        "train": str(
            subset(so / "pool.jsonl", data / "train.jsonl", args.first, SMALL_EVERY if args.small else None)
        ),
        "test": str(subset(so / "test.jsonl", data / "test.jsonl", args.test_first)),
    }
    cfg["label"] = (cfg.get("label") or {}) | ({"second": "tiny.en"} if args.smoke else {})
    labels = recipe_labels(args, Path(cfg["data"]["train"]))
    if labels is not None:  # the recipe's finished labels of the same pool
        cfg["label"] |= {
            "labels": str(labels / "labels.jsonl"),
            "second_labels": str(labels / "second.jsonl"),
        }
    cfg["filter"] = (cfg.get("filter") or {}) | {"score": SCORE, "threshold": THRESHOLD}
    ood = {"an4": str(subset(an4 / "test.jsonl", data / "an4_test.jsonl", args.ood_first))}
    cfg["evaluate"] = (cfg.get("evaluate") or {}) | {"sets": ood}
    train = cfg.get("train") or {}
    overrides = dict(train.get("overrides") or {})
    if args.max_time:  # each round's training budget (the recipe's is an hour per student)
        overrides["trainer.max_time"] = args.max_time
    if args.seed is not None:  # every round's student: initialisation order, shuffling, augmentation
        overrides |= {"seed_everything": args.seed, "data.seed": args.seed}
    cfg["train"] = train | {"overrides": overrides}
    return cfg | {"rounds": args.rounds, "rounds_patience": PATIENCE, "rounds_dev": "in_domain"}


def result_rows(rounds: dict) -> list[dict]:
    """Each round as the issue names its figures, plus what else the pipeline measured."""
    out = []
    for r in rounds["rounds"]:
        wers = r.get("student_wer") or {}
        out.append(
            {
                "round": r["round"],
                "label_wer_kept": r.get("label_wer_kept"),
                "retention": r.get("retention"),
                "student_wer": wers.get("in_domain"),
                "p_vs_previous": r.get("p_vs_previous"),
                "ood_wer": wers.get("an4"),
                "label_wer_all": r.get("label_wer_all"),
                "kept": r.get("kept"),
                "threshold": r.get("threshold"),
                "delta_vs_previous": r.get("delta_vs_previous"),
                "seconds": r.get("seconds"),
            }
        )
    return out


def would_stop_after(rows: list[dict], patience: int = 1) -> int | None:
    """The last round the early-stop rule (on the test set's WER) would have run, if it ends sooner."""
    devs = [{"dev_wer": r["student_wer"]} for r in rows]
    for k in range(1, len(devs)):
        if stop_reason(devs[:k], patience, "in_domain") is not None:
            return k
    return None


def _spread(values: list[float], digits: int = 2) -> dict:
    """Mean and sd over the seeds (generalisation's ``mean_sd``) and the values themselves."""
    return mean_sd(values) | {"per_seed": [round(v, digits) for v in values]}


def summarise(results: list[dict]) -> dict:
    """Several seeds' ``rounds`` results side by side, round by round.

    ``p_vs_first_over_seeds``: one-sided paired t-test over the seeds that round ``k``'s
    student is not better than round 1's on the test set (small p: better), the test that
    sees training noise, which each seed's bootstrap does not.
    """
    from scipy.stats import ttest_rel

    seeds = [r["train_seed"] if r.get("train_seed") is not None else 0 for r in results]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--summarise: the same training seed twice ({seeds})")
    n_rounds = min(len(r["rounds"]) for r in results)
    first = [r["rounds"][0]["student_wer"] for r in results]
    rows = []
    for k in range(n_rounds):
        got = [r["rounds"][k] for r in results]
        wer = [g["student_wer"] for g in got]
        ps = [g["p_vs_previous"] for g in got]
        row = {
            "round": k + 1,
            "student_wer": _spread(wer),
            "ood_wer": _spread([g["ood_wer"] for g in got]),
            "label_wer_kept": _spread([g["label_wer_kept"] for g in got]),
            "retention": _spread([g["retention"] for g in got], digits=3),
            "threshold": [g.get("threshold") for g in got],
            "p_vs_previous": ps,
        }
        if k:
            row["better_than_previous"] = sum(p < 0.05 for p in ps)  # bootstrap, per seed
            row["worse_than_previous"] = sum(p > 0.95 for p in ps)
            row["delta_vs_first"] = _spread([w - f for w, f in zip(wer, first, strict=True)])
            if len(wer) > 1:
                row["p_vs_first_over_seeds"] = round(
                    float(ttest_rel(wer, first, alternative="less").pvalue), 4
                )
        rows.append(row)
    return {
        "benchmark": "rounds_seeds",
        "seeds": seeds,
        "sources": [r.get("command") for r in results],
        "filter": results[0].get("filter"),
        "normaliser": results[0].get("normaliser"),
        "rounds": rows,
    }


def _command(argv: list[str] | None) -> str:
    """The command line that made a result, as recorded in it."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=None, help="default: runs/rounds/speechocean762[-small]")
    ap.add_argument(
        "--result", default=None, help="default: results/rounds.json (--summarise: rounds_seeds.json)"
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--smoke", action="store_true", help="the recipe smoke settings (tiny.en, 1 epoch)")
    ap.add_argument(
        "--small", action="store_true", help="every 4th pool clip and the small recipe's settings and labels"
    )
    ap.add_argument("--first", type=int, default=None, help="only the first N pool utterances")
    ap.add_argument("--test-first", type=int, default=None, help="only the first N test utterances")
    ap.add_argument("--ood-first", type=int, default=None, help="only the first N AN4 test utterances")
    ap.add_argument("--max-time", default=None, help="each round's training budget, DD:HH:MM:SS")
    ap.add_argument(
        "--seed", type=int, default=None, help="every round's training seed (default: the config's, 0)"
    )
    ap.add_argument(
        "--summarise",
        nargs="+",
        default=None,
        metavar="RESULT",
        help="seeds' result files to set side by side",
    )
    args = ap.parse_args(argv)
    if args.summarise:
        result = args.result or str(RESULTS / "rounds_seeds.json")
        out = summarise([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.summarise])
        out["command"] = _command(argv)
        atomic_write_text(result, json.dumps(finite_for_json(out), indent=1, allow_nan=False) + "\n")
        for r in out["rounds"]:
            w = r["student_wer"]
            print(
                f"round {r['round']}: student {w['mean']} +- {w['sd']} {w['per_seed']}, "
                f"AN4 {r['ood_wer']['mean']}, "
                f"p vs previous {r['p_vs_previous']}, p vs first over seeds {r.get('p_vs_first_over_seeds')}"
            )
        print(f"-> {result}")
        return 0
    args.result = args.result or str(RESULTS / "rounds.json")
    if args.out_dir is None:
        args.out_dir = str(
            ROOT / "runs" / "rounds" / ("speechocean762-small" if args.small else "speechocean762")
        )
    args.out_dir = str(Path(args.out_dir).resolve())  # the config's relative paths are the recipe's
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.time()
    cfg = pipeline_config(args)
    result = run(config_from_dict(cfg, base_dir=RECIPE))
    rounds = json.loads((Path(cfg["out"]) / "rounds" / "rounds.json").read_text())
    rows = result_rows(rounds)
    out = {
        "benchmark": "rounds",
        "command": _command(argv),
        "pool": cfg["data"]["train"],
        "test": cfg["data"]["test"],
        "ood": cfg["evaluate"]["sets"],
        "train_seed": args.seed,
        "teacher": cfg["label"].get("teacher"),
        "second": cfg["label"].get("second"),
        "filter": {k: v for k, v in cfg["filter"].items() if k in ("score", "threshold", "keep_at_least")},
        "normaliser": rounds["normaliser"],
        "rounds": rows,
        "stopped_early": rounds["stopped_early"],
        "best_round": rounds["best_round"],
        "would_stop_after": would_stop_after(rows),
        "report": result.report,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(args.result, json.dumps(finite_for_json(out), indent=1, allow_nan=False) + "\n")
    for r in rows:
        print(
            f"round {r['round']}: label WER kept {r['label_wer_kept']}, retention {r['retention']}, "
            f"student WER {r['student_wer']} (p vs previous {r['p_vs_previous']}), AN4 {r['ood_wer']}"
        )
    print(f"-> {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
