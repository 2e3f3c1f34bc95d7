"""Pseudo-label quality: how much label WER a reference-free filter removes, and at what retention.

    python benchmarks/label_quality.py --labels runs/an4/train.base.jsonl \
        --second runs/an4/train.tiny_en.jsonl

The labels are the teacher's (Whisper base) on AN4 train; ``--second`` is the same audio
decoded by tiny.en, for the agreement score. References (``ref_text``) are used ONLY to
measure: every threshold reported as reference-free is a documented default
(:data:`asr_distill.quality.calibrate.DEFAULT_THRESHOLDS`) or a retention (``keep``), never fitted
to the references it is scored on. The calibrated figures fit on one half of the speakers
and are scored on the other half.

Writes ``benchmarks/results/label_quality.json`` (WER in percent, format_insensitive
normaliser; retention a fraction) and ``label_quality.png`` (retention vs label WER per
score, over all labels: a measurement, not a threshold choice).

``pools`` sets the reference-free filter beside AN4 train on two more pools, each with its
recipe's filter settings (the support recipe's product lexicon, the normaliser): the support
recipe's synthesised calls and the speechocean762 pool (non-native read speech). Each pool's
labels (base, and tiny.en for agreement) are taken from a finished label stage under ``runs/``
when one has the same teachers, else labeled here into
``runs/label_quality/<pool>/`` (resumable; ``--only-existing`` skips such a pool and says
why). A folder another job is still writing (no ``label/.done``) is never read or written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

from asr_distill.jsonl import atomic_write_text, read_jsonl
from asr_distill.metrics import word_error_rate
from asr_distill.quality.calibrate import (
    DEFAULT_THRESHOLDS,
    Calibration,
    calibrate,
    choose_point,
    finite_for_json,
    plot_calibration,
    retention_curve,
    utterance_errors,
)
from asr_distill.quality.filter import FilterConfig, PseudoLabel, filter_labels, read_labels
from asr_distill.quality.stage import FilterOptions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NORMALISER = "format_insensitive"
REVIEW_FRACTION = 0.10
KEEPS = (0.7, 0.8, 0.9)
POOL_KEEPS = (0.6, 0.7)  # the pools' retention budgets: the bars' 60 % and the goals' 70 %
SHARED_DATA = ROOT.parent / "shared" / "data"
POOL_WORK = ROOT / "runs" / "label_quality"
TEACHER, SECOND = "base", "tiny.en"
SUPPORT_CALLS, SUPPORT_SEED = 200, 1  # the support recipe's small pool (`make demo`), seed as run.sh
# finished pipeline runs whose label stage may already hold a pool's labels, newest recipe size first
POOL_RUNS = {
    "support": ("runs/recipes/support-full", "runs/recipes/support-small", "runs/recipes/support"),
    "speechocean762": (
        "runs/recipes/speechocean-full",
        "runs/recipes/speechocean-small",
        "runs/recipes/speechocean-small/seed0",  # benchmarks/generalisation.py's seed 0
    ),
}
# the recipe whose filter settings (lexicon, normaliser) each pool is filtered with
POOL_RECIPES = {"support": "support", "speechocean762": "speechocean"}


def _wer(pairs) -> float:
    pairs = list(pairs)
    return (
        word_error_rate([r for r, _ in pairs], [h for _, h in pairs], NORMALISER).wer if pairs else math.nan
    )


def _nan(x):
    return math.nan if x is None else x


def simulated_review(kept: list[PseudoLabel], n_review: int) -> tuple[float, float]:
    """WER of ``kept`` after the ``n_review`` least-confident ones are corrected by the reference.

    The reference plays the reviewer: an item whose reference is empty would be rejected,
    any other is fixed to its reference. Returns (WER after review, minutes reviewed).
    """
    order = sorted(
        range(len(kept)), key=lambda i: _nan(kept[i].score) if kept[i].score is not None else -math.inf
    )
    reviewed = set(order[:n_review])
    pairs = [(p.ref_text, p.ref_text if i in reviewed else p.text) for i, p in enumerate(kept)]
    return _wer(pairs), sum(kept[i].duration for i in reviewed) / 60


def per_score(labels: list[PseudoLabel], errors, total: int) -> dict:
    """For every score, over the labels that pass the other rules: default point and fixed retentions."""
    out = {}
    for name in labels[0].scores:
        values = [_nan(p.scores[name]) for p in labels]
        curve = retention_curve(name, values, errors, total)
        row = {}
        if name in DEFAULT_THRESHOLDS:
            t = DEFAULT_THRESHOLDS[name]
            ok = [i for i, v in enumerate(values) if not math.isnan(v) and v >= t]
            e = sum(errors[i][0] for i in ok)
            w = sum(errors[i][1] for i in ok)
            row.update(
                default_threshold=t,
                retention_at_default=len(ok) / total,
                wer_at_default=100 * e / w if w else None,
            )
        for k in KEEPS:
            p = choose_point(curve, keep=k)
            row[f"wer_at_keep_{k}"] = p.wer
            row[f"retention_at_keep_{k}"] = p.retention
        out[name] = row
    return out


def held_out(labels: list[PseudoLabel], target_ratio: float) -> dict:
    """Calibrate on half the speakers (target = ``target_ratio`` x that half's WER), score the other half."""
    speakers = sorted({p.speaker or p.id for p in labels})
    halves = [set(speakers[0::2]), set(speakers[1::2])]
    runs = []
    for fit, test in ((0, 1), (1, 0)):
        a = [p for p in labels if (p.speaker or p.id) in halves[fit]]
        b = [p for p in labels if (p.speaker or p.id) in halves[test]]
        names = list(a[0].scores)
        wer_a = _wer((p.ref_text, p.text) for p in a)
        cal: Calibration = calibrate(
            {n: [_nan(p.scores[n]) for p in a] for n in names},
            [p.ref_text for p in a],
            [p.text for p in a],
            target_wer=target_ratio * wer_a,
            normaliser=NORMALISER,
        )
        if cal.chosen is None:
            runs.append({"fit_speakers": len(halves[fit]), "score": cal.score, "threshold": None})
            continue
        kept_b = [p for p in b if _nan(p.scores[cal.score]) >= cal.chosen.threshold]
        runs.append(
            {
                "fit_speakers": len(halves[fit]),
                "fit_utterances": len(a),
                "target_wer": target_ratio * wer_a,
                "score": cal.score,
                "threshold": cal.chosen.threshold,
                "fit_retention": cal.chosen.retention,
                "test_utterances": len(b),
                "test_wer_all": _wer((p.ref_text, p.text) for p in b),
                "test_wer_kept": _wer((p.ref_text, p.text) for p in kept_b),
                "test_retention": len(kept_b) / len(b),
            }
        )
    return {"target": f"{target_ratio} x the fit half's label WER", "runs": runs}


# --- the other pools -----------------------------------------------------------------------------


def existing_pool_labels(name: str) -> tuple[Path, Path] | None:
    """A finished label stage under ``runs/`` with base as teacher and tiny.en second, if any.

    Finished means its ``label/.done`` marker exists (a job still labeling has none); the
    teachers are read from the labels' own provenance.
    """
    for run in POOL_RUNS.get(name, ()):
        label_dir = ROOT / run / "label"
        labels, second = label_dir / "labels.jsonl", label_dir / "second.jsonl"
        if not ((label_dir / ".done").is_file() and labels.is_file() and second.is_file()):
            continue
        if _teacher_of(labels) == TEACHER and _teacher_of(second) == SECOND:
            return labels, second
    return None


def _teacher_of(path: Path) -> str | None:
    first = next(iter(read_jsonl(path)), None)
    return (first or {}).get("provenance", {}).get("teacher")


def pool_manifest(name: str) -> Path:
    """The pool's audio: speechocean762's pool manifest, or the support calls (synthesised once)."""
    if name == "speechocean762":
        manifest = SHARED_DATA / "speechocean762" / "pool.jsonl"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"{manifest} not found (the speechocean762 data sits beside the checkout)"
            )
        return manifest
    from asr_distill.synth import write_corpus

    out = POOL_WORK / "support" / "data"
    done = out / "manifest.jsonl"
    return done if done.is_file() else write_corpus(out, SUPPORT_CALLS, SUPPORT_SEED)


def label_pool(name: str) -> tuple[Path, Path]:
    """Label the pool with base and tiny.en (greedy), as the pipeline's label stage would."""
    from asr_distill.label import label_to_file
    from asr_distill.pipeline import LabelConfig

    manifest, cfg, out = pool_manifest(name), LabelConfig(teacher=TEACHER, second=SECOND), POOL_WORK / name
    labels, second = out / "labels.jsonl", out / "second.jsonl"
    label_to_file(manifest, labels, cfg.run(TEACHER, cfg.options()))
    label_to_file(manifest, second, cfg.run(SECOND, cfg.options(greedy=True)))
    return labels, second


def _filtered(labels: list, second: dict, config: FilterConfig) -> dict:
    return _figures_of(filter_labels(labels, second=second, config=config))


def _figures_of(result) -> dict:
    """Kept label WER, retention and the confidence rule of one filter run."""
    r = result.report
    return {
        "wer_kept": _wer((p.ref_text, p.text) for p in result.kept if p.ref_text is not None),
        "retention": r.retention,
        "score": r.score,
        "threshold": r.threshold,
        "threshold_source": r.threshold_source,
    }


def recipe_filter(pool: str) -> tuple[FilterConfig, str]:
    """The filter a pool's recipe runs (its small config's ``filter`` section), and that file."""
    import yaml

    recipe = ROOT / "recipes" / POOL_RECIPES[pool]
    config = recipe / "config_small.yaml"
    section = dict(yaml.safe_load(config.read_text(encoding="utf-8")).get("filter") or {})
    if section.get("lexicon"):
        section["lexicon"] = str(recipe / section["lexicon"])
    return FilterOptions(**section).filter_config(), str(config.relative_to(ROOT))


def pool_figures(labels_path: Path, second_path: Path, config: FilterConfig | None = None) -> dict:
    """The reference-free filter on one pool: label WER before and after, retention, the rule.

    The top-level figures are ``config``'s (a recipe's filter: its lexicon, normaliser and
    retention floor; the default :class:`FilterConfig` when None) at the default score's
    documented threshold, lowered where the recipe's ``keep_at_least`` asks;
    ``keep_<k>`` are the same with a retention budget instead (``filter.keep``), the other
    reference-free choice, which carries over to a pool whose scores sit elsewhere.
    ``wer_all`` is the teacher's labels as written; ``wer_all_corrected`` every label after the
    filter's corrections, kept or not. With a lexicon, ``without_lexicon`` repeats the figures
    without it, to tell the correction's share from the filter's.
    """
    config = config or FilterConfig()
    labels = read_labels(labels_path)
    second = {lab.id: lab for lab in read_labels(second_path)}
    scored = [lab for lab in labels if lab.ref_text is not None]

    def figures(cfg: FilterConfig) -> dict:
        result = filter_labels(labels, second=second, config=cfg)
        every = [p for p in (*result.kept, *result.dropped) if p.ref_text is not None]
        return {
            "wer_all_corrected": _wer((p.ref_text, p.text) for p in every),
            **_figures_of(result),
            **{
                f"keep_{k}": _filtered(labels, second, dataclasses.replace(cfg, keep=k, keep_at_least=None))
                for k in POOL_KEEPS
            },
        }

    out = {"wer_all": _wer((lab.ref_text, lab.text) for lab in scored), **figures(config)}
    if config.correction.lexicon:
        plain = dataclasses.replace(config, correction=dataclasses.replace(config.correction, lexicon=()))
        out["without_lexicon"] = figures(plain)
    return out | {
        "utterances": len(labels),
        "with_references": len(scored),
        "labels": str(labels_path),
        "second": str(second_path),
    }


def pools(an4: tuple[str, str], only_existing: bool) -> dict:
    """AN4 train through the default filter, the other pools each through its recipe's filter.

    ``recipe_filter`` reads the recipe's settings: the support lexicon, the normaliser.
    """
    out = {"an4": pool_figures(Path(an4[0]), Path(an4[1]))}
    for name in ("support", "speechocean762"):
        found = existing_pool_labels(name)
        if found is None and only_existing:
            out[name] = {"skipped": f"no finished {TEACHER}/{SECOND} labels under runs/ (--only-existing)"}
            continue
        try:
            config, source = recipe_filter(name)
            out[name] = pool_figures(*(found or label_pool(name)), config) | {"filter_config": source}
        except (FileNotFoundError, ImportError) as e:
            out[name] = {"skipped": str(e)}
        print(f"pool {name}: {out[name]}", file=sys.stderr)
    return out


# the bars on the pools: (kept WER at most this x all, at least this retention)
POOL_BARS = {"an4": (0.2, 0.75), "support": (0.5, 0.6), "speechocean762": (0.5, 0.6)}


def pools_bar(found: dict) -> dict:
    """Each pool's bar checked for each reference-free choice: the default threshold and each budget.

    Every choice is reported, none picked after the fact: which one a user runs is their config.
    ``ratio`` is kept WER over the teacher's labels as written (``wer_all``); with a lexicon,
    ``ratio_corrected`` is over every label after correction, the filter's share alone.
    """
    out = {}
    for name, (max_ratio, min_retention) in POOL_BARS.items():
        p = found.get(name) or {}
        if "wer_all" not in p:
            continue
        choices = {"default": p} | {f"keep_{k}": p[f"keep_{k}"] for k in POOL_KEEPS if f"keep_{k}" in p}
        rows = {}
        for choice, c in choices.items():
            ratio = c["wer_kept"] / p["wer_all"] if p["wer_all"] else math.nan
            rows[choice] = {
                "ratio": round(ratio, 3),
                "retention": c["retention"],
                "met": bool(ratio <= max_ratio and c["retention"] >= min_retention),
            }
            if "wer_all_corrected" in p and p["wer_all_corrected"] != p["wer_all"]:
                rows[choice]["ratio_corrected"] = round(c["wer_kept"] / p["wer_all_corrected"], 3)
        out[name] = {"max_ratio": max_ratio, "min_retention": min_retention, "choices": rows}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", default=str(ROOT / "runs/an4/train.base.jsonl"))
    ap.add_argument("--second", default=str(ROOT / "runs/an4/train.tiny_en.jsonl"))
    ap.add_argument("--out", default=str(RESULTS / "label_quality.json"))
    ap.add_argument("--plot", default=str(RESULTS / "label_quality.png"))
    ap.add_argument(
        "--only-existing",
        action="store_true",
        help="skip a pool (support, speechocean762) no finished run has labels for, instead of labeling it",
    )
    args = ap.parse_args(argv)
    t0 = time.time()
    labels = read_labels(args.labels)
    second = {lab.id: lab for lab in read_labels(args.second)}
    missing = [lab.id for lab in labels if lab.ref_text is None]
    if missing:
        raise SystemExit(
            f"{len(missing)} labels have no ref_text: this benchmark measures against references"
        )

    # 1. The reference-free default filter: default score, documented default threshold.
    result = filter_labels(labels, second=second, config=FilterConfig())
    every = [*result.kept, *result.dropped]
    n = len(labels)
    wer_all = _wer((lab.ref_text, lab.text) for lab in labels)
    wer_all_corrected = _wer((p.ref_text, p.text) for p in every)
    wer_kept = _wer((p.ref_text, p.text) for p in result.kept)

    # 2. Simulated review of the 10 % least-confident (10 % of all utterances, from the kept set).
    n_review = math.ceil(REVIEW_FRACTION * n)
    wer_review, review_min = simulated_review(list(result.kept), n_review)
    wer_review_nofilter, _ = simulated_review(every, n_review)

    # 3. Every score: curves over the labels that pass the non-confidence rules.
    survivors = [p for p in every if all(v.keep for v in p.filter_history if v.rule != "low_confidence")]
    errors = utterance_errors([p.ref_text for p in survivors], [p.text for p in survivors], NORMALISER)
    scores = per_score(survivors, errors, n)
    cal_all = calibrate(
        {s: [_nan(p.scores[s]) for p in survivors] for s in survivors[0].scores},
        [p.ref_text for p in survivors],
        [p.text for p in survivors],
        keep=result.report.retention,
        score=result.report.score,
        normaliser=NORMALISER,
        total=n,
    )
    plot_calibration(
        cal_all,
        args.plot,
        highlight=("agreement", "avg_logprob", "entropy_gibbs_exp_mean", "token_logprob_min", "no_speech"),
    )

    # 4. Agreement split, as NOTES.md measured it on AN4 test.
    exact = [p for p in every if p.scores.get("agreement") == 1.0]
    differ = [p for p in every if p.scores.get("agreement") is not None and p.scores["agreement"] < 1.0]

    # 5. Without a second decoding (one model only), still reference-free: a default, or a retention.
    single = {}
    for name, cfg in (
        ("avg_logprob default", FilterConfig(score="avg_logprob")),
        ("token_logprob_min keep 0.8", FilterConfig(score="token_logprob_min", keep=0.8)),
        ("entropy_gibbs_exp_min keep 0.8", FilterConfig(score="entropy_gibbs_exp_min", keep=0.8)),
    ):
        one = filter_labels(labels, config=cfg)
        single[name] = {
            "retention": one.report.retention,
            "wer_kept": _wer((p.ref_text, p.text) for p in one.kept),
            "threshold": one.report.threshold,
        }

    report = result.report
    out = {
        "benchmark": "label_quality",
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "labels": args.labels,
        "second": args.second,
        "teacher": labels[0].provenance.teacher,
        "second_teacher": next(iter(second.values())).provenance.teacher,
        "normaliser": NORMALISER,
        "label_normaliser": report.normaliser,
        "utterances": n,
        "hours": report.hours,
        "wer_all": wer_all,
        "wer_all_corrected": wer_all_corrected,
        "wer_kept": wer_kept,
        "retention": report.retention,
        "retention_hours": report.retention_hours,
        "wer_ratio": wer_kept / wer_all if wer_all else None,
        "score": report.score,
        "threshold": report.threshold,
        "threshold_source": report.threshold_source,
        "reference_free": True,
        "bar": {
            "min_retention": 0.7,
            "max_wer_ratio": 0.7,
            "goal_wer_ratio": 0.5,
            "met": report.retention >= 0.7 and wer_kept <= 0.7 * wer_all,
            "goal_met": report.retention >= 0.7 and wer_kept <= 0.5 * wer_all,
        },
        "dropped_by_reason": {k: dataclasses.asdict(v) for k, v in report.by_reason.items()},
        "corrections": report.corrections,
        "wer_after_review_10pct": wer_review,
        "review_10pct": {
            "items": n_review,
            "audio_min": review_min,
            "min_per_hour_kept": review_min / (report.kept_hours or math.nan),
            "from": "kept set, least confident first; the reference plays the reviewer",
            "wer_after_review_without_filter": wer_review_nofilter,
        },
        "agreement_split": {
            "exact_fraction": len(exact) / n,
            "wer_exact": _wer((p.ref_text, p.text) for p in exact),
            "wer_differ": _wer((p.ref_text, p.text) for p in differ),
        },
        "single_model": single,
        "per_score": scores,
        "held_out_calibration": held_out(survivors, 0.5),
        "pools": (found := pools((args.labels, args.second), args.only_existing)),
        "pools_bar": pools_bar(found),
        "plot": args.plot,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(args.out, json.dumps(finite_for_json(out), indent=1, allow_nan=False) + "\n")
    print(
        f"{n} utterances: label WER all {wer_all:.2f}% -> kept {wer_kept:.2f}% "
        f"(x{out['wer_ratio']:.2f}) at retention {report.retention:.1%} with {report.score} >= "
        f"{report.threshold} ({report.threshold_source}); after reviewing 10%: {wer_review:.2f}% "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
