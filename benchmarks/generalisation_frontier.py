"""Every generalisation run so far on one page: how far each setting moved in domain and out of it.

    python benchmarks/generalisation_frontier.py

Issue 16 asks each seed's student to be better in domain *and* no worse than tiny.en out of
domain. Dozens of settings have been measured (``benchmarks/results/generalisation*.json``,
each written by ``generalisation.py``); this reads them all back, without decoding anything,
and puts each setting's mean change against tiny.en in domain beside its mean change on AN4
test (the out-of-domain set both recipes share), with the seeds in which every bar of its
recipe held. A run continued on more seeds (a ``_seeds34`` file with the same variant) joins
its first run. The verdicts are the ones each run recorded with its code of the day; a
setting is a point on the trade-off, not a re-measurement.

Writes ``benchmarks/results/generalisation_frontier.json`` and a scatter plot beside it
(``generalisation_frontier.png``: one panel per recipe, AN4 change against in-domain change).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from asr_distill.jsonl import atomic_write_text
from asr_distill.report import _pyplot, _save

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "generalisation_frontier.json"
OOD = "an4"  # the out-of-domain set every recipe is checked on
SHIPPED = {"speechocean": "generalisation_speechocean", "support": "generalisation_support_valwise05"}
_MORE_SEEDS = re.compile(r"_seeds\d+$")
DEFINITIONS = {
    "in_domain_delta": "mean over seeds of student WER - tiny.en WER on the recipe's own test set, points",
    "ood_delta": f"the same on {OOD} test (out of domain for both recipes), points",
    "seeds_all_bars": "seeds in which the student passed every bar of its recipe, as that run recorded them",
    "seeds_<set>": "seeds passing that set's bar / seeds run",
    "shipped": "the run of the recipe's shipped configuration",
}


def _variant(data: dict) -> str:
    v = data.get("variant")
    return v["name"] if isinstance(v, dict) else "recipe"


def runs(paths: list[Path]) -> dict[tuple[str, str], dict]:
    """Per (recipe, run stem): its variant, seeds, per-seed verdicts per set and per-seed rows.

    A ``<stem>_seeds<k>`` file of the same variant continues ``<stem>``'s run.
    """
    merged: dict[tuple[str, str], dict] = {}
    for path in sorted(paths):
        data = json.loads(path.read_text())
        stem = _MORE_SEEDS.sub("", path.stem)
        for recipe, bars in data.get("bars", {}).items():
            if not isinstance(bars, dict):
                continue
            run = merged.setdefault(
                (recipe, stem), {"variant": _variant(data), "files": [], "verdicts": {}, "rows": []}
            )
            if run["variant"] != _variant(data):
                raise ValueError(
                    f"{path.name}: variant {_variant(data)!r}, but {stem} ran {run['variant']!r}"
                )
            run["files"].append(path.name)
            for set_name, bar in bars.items():
                for verdict in bar.get("per_seed", []):
                    run["verdicts"].setdefault(set_name, {})[verdict["seed"]] = bool(verdict["pass"])
            # the per-seed rows (the table also carries "mean +- sd" rows as text)
            run["rows"] += [
                r for r in data.get("rows", []) if r["recipe"] == recipe and isinstance(r["seed"], int)
            ]
    return merged


def _mean_delta(rows: list[dict], set_name: str) -> float | None:
    deltas = [r["student"] - r["tiny_en"] for r in rows if r["set"] == set_name]
    return round(statistics.fmean(deltas), 2) if deltas else None


def frontier_row(recipe: str, stem: str, run: dict, shipped: dict[str, str]) -> dict:
    """One flat row (the same keys for every run of every recipe)."""
    verdicts = run["verdicts"]
    seeds = sorted({s for per_seed in verdicts.values() for s in per_seed})
    every = [s for s in seeds if all(per_seed.get(s, False) for per_seed in verdicts.values())]

    def passed(set_name: str) -> str:
        per_seed = verdicts.get(set_name, {})
        return f"{sum(per_seed.values())}/{len(per_seed)}" if per_seed else "-"

    return {
        "recipe": recipe,
        "run": stem,
        "variant": run["variant"],
        "seeds": len(seeds),
        "seeds_all_bars": len(every),
        "seeds_in_domain": passed("in_domain"),
        f"seeds_{OOD}": passed(OOD),
        "seeds_other_ood": " ".join(
            f"{k} {passed(k)}" for k in sorted(verdicts) if k not in ("in_domain", OOD)
        )
        or "-",
        "in_domain_delta": _mean_delta(run["rows"], "in_domain"),
        "ood_delta": _mean_delta(run["rows"], OOD),
        "shipped": shipped.get(recipe) == stem,
    }


def summary(rows: list[dict]) -> dict:
    """Per recipe: how many runs, which (3 seeds or more) passed every bar in every seed, the best share."""
    out: dict[str, dict] = {"runs": {}, "runs_every_bar_every_seed": {}, "best_share_all_bars": {}}
    for recipe in sorted({r["recipe"] for r in rows}):
        mine = [r for r in rows if r["recipe"] == recipe and r["seeds"]]
        best = max(mine, key=lambda r: (r["seeds_all_bars"] / r["seeds"], r["seeds"]))
        out["runs"][recipe] = len(mine)
        out["runs_every_bar_every_seed"][recipe] = [
            r["run"] for r in mine if r["seeds_all_bars"] == r["seeds"] >= 3
        ]
        out["best_share_all_bars"][recipe] = f"{best['seeds_all_bars']}/{best['seeds']} {best['run']}"
    return out


def plot(rows: list[dict], path: Path) -> None:
    """One panel per recipe: mean AN4 change against mean in-domain change, each run a labelled point."""
    plt = _pyplot()
    recipes = sorted({r["recipe"] for r in rows})
    fig, axes = plt.subplots(1, len(recipes), figsize=(7 * len(recipes), 6), squeeze=False)
    for ax, recipe in zip(axes[0], recipes, strict=True):
        mine = [
            r for r in rows if r["recipe"] == recipe and None not in (r["in_domain_delta"], r["ood_delta"])
        ]
        for r in mine:
            share = r["seeds_all_bars"] / r["seeds"] if r["seeds"] else 0.0
            ax.scatter(
                r["in_domain_delta"],
                r["ood_delta"],
                s=30 + 20 * r["seeds"],
                c=[[1 - share, share * 0.7, 0.2]],
                edgecolors="black" if r["shipped"] else "none",
                linewidths=2,
            )
            ax.annotate(r["variant"], (r["in_domain_delta"], r["ood_delta"]), fontsize=6, alpha=0.8)
        ax.axhline(0.3, color="grey", linestyle="--", linewidth=1)
        ax.axvline(0.0, color="grey", linewidth=0.5)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("in domain: student - tiny.en (WER points, mean over seeds)")
        ax.set_ylabel(f"{OOD}: student - tiny.en (points; dashed: the bar's +0.3)")
        ax.set_title(f"{recipe}: {len(mine)} runs (red: no seed passes every bar; outlined: shipped)")
    fig.tight_layout()
    _save(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    mine = {out.resolve(), OUT.resolve()}  # this script's own output is not a generalisation run
    paths = [p for p in Path(args.results).glob("generalisation*.json") if p.resolve() not in mine]
    if not paths:
        print(f"skipped: no generalisation results under {args.results}")
        return
    merged = runs(paths)
    rows = sorted(
        (frontier_row(recipe, stem, run, SHIPPED) for (recipe, stem), run in merged.items()),
        key=lambda r: (r["recipe"], -r["seeds_all_bars"], r["run"]),
    )
    result = {
        "benchmark": "generalisation_frontier",
        "out_of_domain_set": OOD,
        **summary(rows),
        "rows": rows,
        "files": sorted(p.name for p in paths),
        "definitions": DEFINITIONS,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    plot(rows, out.with_name(out.stem + ".png"))
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary(rows), indent=2))


if __name__ == "__main__":
    main()
