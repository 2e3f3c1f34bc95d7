"""Word-level vs whole-utterance review: label errors removed per minute of audio listened to.

    python benchmarks/review_sim.py --corpus an4 --every 6 --corpus speechocean762 --every 20

For each corpus, a deterministic subset of its pool (every Nth line) is labeled through the
CLI with Whisper base (``--word-timestamps``) and tiny.en (or the ``--opinion`` models: each
word's confidence is then the vote of all of them), filtered with ``--second``, and
a simulated reviewer (:mod:`asr_distill.quality.review_sim`: the reference transcript stands
in for the person) works through the review queue with a budget of minutes listened, in
each mode: ``utterance`` (today: whole clips, least confident first, label replaced by the
reference), ``utterance_queue`` (whole clips in the word queue's order) and ``word`` (only
the highlighted words changed, only their padded spans heard). Pools: ``kept`` (what the
review stage gets) and ``all`` (kept + dropped). The bar: word review removes at least 2x
the label errors per minute listened of whole-utterance review.

Writes ``benchmarks/results/review_sim.json``; errors are word edits under the
``format_insensitive`` normaliser.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from asr_distill.jsonl import atomic_write_text
from asr_distill.quality.consensus import DOUBTFUL_CONFIDENCE
from asr_distill.quality.filter import read_pseudo_labels
from asr_distill.quality.review_queue import PAD, Pad
from asr_distill.quality.review_sim import MODES, confidence_table, simulate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
POOLS = {"an4": DATA / "an4" / "train.jsonl", "speechocean762": DATA / "speechocean762" / "pool.jsonl"}
BUDGETS_MIN = (0.5, 1.0, 2.0)
BAR = 2.0


def subset(pool: Path, every: int, out: Path) -> Path:
    """Every ``every``-th line of ``pool`` with absolute audio paths (the first line included)."""
    lines = [json.loads(x) for x in pool.read_text().splitlines() if x.strip()][::every]
    for d in lines:
        d["audio_filepath"] = str((pool.parent / d["audio_filepath"]).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(d) + "\n" for d in lines))
    return out


def cli(*argv: str) -> None:
    """``asr-distill ARGV`` in a child process, echoed; stops the benchmark if it fails."""
    cmd = [sys.executable, "-m", "asr_distill.cli", *argv]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def parse_opinion(opinion: str) -> tuple[str, tuple[str, ...], str]:
    """``MODEL``, ``MODEL:BEAM`` or ``MODEL@T[/SEED]`` as (model, ``label`` flags, file stem).

    ``@T`` samples at temperature T, one plain sample per clip (``--best-of 1``), seeded
    with SEED (default 0): several seeds are several opinions of the same model.
    """
    head, _, sampled = opinion.partition("@")
    model, _, beam = head.partition(":")
    stem = Path(model).name.replace(".", "_")
    flags: tuple[str, ...] = ()
    if beam:
        flags, stem = ("--beam-size", beam), f"{stem}_beam{beam}"
    if sampled:
        t, _, seed = sampled.partition("/")
        seed = seed or "0"
        flags += ("--temperature", t, "--best-of", "1", "--seed", seed)
        stem += f"_t{t}_s{seed}"
    return model, flags, stem


def opinion_file(d: Path, opinion: str) -> Path:
    """Where an opinion's labels of the subset go (tiny.en greedy keeps its old name: runs resume).

    A checkpoint's labels are named after its file name, not its folder.
    """
    return d / f"{parse_opinion(opinion)[2]}.jsonl"


def prepare(
    corpus: str,
    every: int,
    work: Path,
    keep_at_least: float | None = None,
    opinions: tuple[str, ...] = ("tiny.en",),
) -> Path:
    """Label (base with word timings, each second opinion) and filter; returns the filter's folder.

    ``opinions`` are ``MODEL``, ``MODEL:BEAM`` (beam search width) or ``MODEL@T[/SEED]``
    (a sample at temperature T, see :func:`parse_opinion`): the first is what the
    filter's agreement score compares with, all of them vote on each word's confidence.
    ``keep_at_least`` is the filter's retention floor (``--keep-at-least``), as a recipe sets it.
    Reruns resume.
    """
    d = work / corpus
    manifest = subset(POOLS[corpus], every, d / "subset.jsonl")
    base = d / "base.jsonl"
    name = "filtered" if keep_at_least is None else f"filtered_floor{keep_at_least:g}"
    if tuple(opinions) != ("tiny.en",):
        name += "_" + "+".join(opinion_file(d, o).stem for o in opinions)
    filtered = d / name
    cli("label", str(manifest), "--out", str(base), "--model", "base", "--word-timestamps")
    seconds = []
    for opinion in opinions:
        model, extra, _ = parse_opinion(opinion)
        out = opinion_file(d, opinion)
        cli("label", str(manifest), "--out", str(out), "--model", model, *extra)
        seconds += ["--second", str(out)]
    floor = () if keep_at_least is None else ("--keep-at-least", str(keep_at_least))
    cli("filter", str(base), *seconds, "--out", str(filtered), *floor)
    return filtered


def pad_sweep(labels, budgets: list[float], pads: list[Pad]) -> dict:
    """Word review's ratio to utterance review at each budget with other pads before and after a run."""
    base = [simulate(labels, "utterance", b).removed_per_min for b in budgets]
    out = {}
    for pad in pads:
        word = [simulate(labels, "word", b, pad=pad).removed_per_min for b in budgets]
        out[str(pad)] = [round(w / u, 3) if u else None for w, u in zip(word, base, strict=True)]
    return out


def threshold_sweep(labels, budgets: list[float], thresholds: list[float]) -> dict:
    """Word review's ratio to utterance review at each budget with other doubtful-word thresholds.

    Utterance review's order does not depend on the threshold; word review's queue does.
    """
    base = [simulate(labels, "utterance", b).removed_per_min for b in budgets]
    out = {}
    for t in thresholds:
        word = [simulate(labels, "word", b, threshold=t).removed_per_min for b in budgets]
        out[f"{t:g}"] = [round(w / u, 3) if u else None for w, u in zip(word, base, strict=True)]
    return out


def compare(labels, budgets: list[float]) -> dict:
    """Every mode at every budget, and word vs utterance removed-per-minute ratios."""
    rows = {m: [asdict(simulate(labels, m, b)) for b in budgets] for m in MODES}
    ratios = []
    for u, w in zip(rows["utterance"], rows["word"], strict=True):
        rate = u["removed_per_min"]
        ratios.append(round(w["removed_per_min"] / rate, 3) if rate else None)
    return {"budgets_min": budgets, "modes": rows, "ratio_word_vs_utterance": ratios}


def evaluate(filtered: Path, pads: list[Pad] = (), thresholds: list[float] = ()) -> dict:
    """The simulation on the kept labels and on all labels, at fixed budgets and the whole word queue.

    Each part also gets its word-confidence table (how often a word of each confidence is
    wrong, and how many of the errors the queue can reach) and, with ``pads`` or
    ``thresholds``, the ratios at other pads or doubtful-word thresholds.
    """
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    every = kept + read_pseudo_labels(filtered / "dropped.jsonl")
    out = {}
    for name, labels in (("kept", kept), ("all", every)):
        whole = simulate(labels, "word", 1e9)  # the word queue to its end: every highlighted run heard
        budgets = sorted({*BUDGETS_MIN, round(whole.listened_min, 3)})
        out[name] = {
            "labels": len(labels),
            "audio_min": round(sum(p.duration for p in labels) / 60, 3),
            "with_word_timings": sum(bool(p.words) for p in labels),
            "with_word_confidence": sum(bool(p.word_confidence) for p in labels),
            "word_queue_min": whole.listened_min,
            **compare(labels, budgets),
            "confidence": confidence_table(labels),
        }
        if pads:
            out[name]["ratio_by_pad"] = pad_sweep(labels, budgets, pads)
        if thresholds:
            out[name]["ratio_by_threshold"] = threshold_sweep(labels, budgets, thresholds)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", action="append", choices=sorted(POOLS), required=True)
    ap.add_argument("--every", action="append", type=int, required=True, help="one per --corpus")
    ap.add_argument(
        "--keep-at-least",
        type=float,
        action="append",
        help="one per --corpus (0: none): the filter's retention floor, as that corpus's recipe sets it",
    )
    ap.add_argument(
        "--sweep-pad",
        type=Pad.parse,
        nargs="*",
        default=[],
        help="also the word/utterance ratios with these pads: SECONDS either side of a run, or BEFORE:AFTER",
    )
    ap.add_argument(
        "--opinion",
        action="append",
        help="a second opinion, MODEL, MODEL:BEAM or MODEL@TEMPERATURE[/SEED] (a plain sample; "
        "repeatable; default tiny.en): the first is the filter's agreement partner, all vote on each "
        "word's confidence",
    )
    ap.add_argument(
        "--sweep-threshold",
        type=float,
        nargs="*",
        default=[],
        help="also the word/utterance ratios with these doubtful-word thresholds (the queue's is "
        f"{DOUBTFUL_CONFIDENCE:g})",
    )
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "review_sim")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "review_sim.json")
    args = ap.parse_args(argv)
    if len(args.every) != len(args.corpus):
        ap.error("give one --every per --corpus")
    floors = args.keep_at_least or [0.0] * len(args.corpus)
    if len(floors) != len(args.corpus):
        ap.error("give one --keep-at-least per --corpus, or none")
    missing = [c for c in args.corpus if not POOLS[c].is_file()]
    if missing:
        ap.error(f"{', '.join(missing)}: not found under {DATA}")
    opinions = tuple(args.opinion or ["tiny.en"])
    corpora = {}
    for corpus, every, floor in zip(args.corpus, args.every, floors, strict=True):
        filtered = prepare(corpus, every, args.work, floor or None, opinions)
        corpora[corpus] = {
            "every": every,
            "keep_at_least": floor or None,
            **evaluate(filtered, args.sweep_pad, args.sweep_threshold),
        }
    headline = {c: r["all"]["ratio_word_vs_utterance"] for c, r in corpora.items()}
    kept = {c: r["kept"]["ratio_word_vs_utterance"] for c, r in corpora.items()}
    result = {
        "bar": f"word review removes >= {BAR}x the label errors per minute listened of utterance review",
        "normaliser": "format_insensitive",
        "teacher": "base (--word-timestamps)",
        "second_opinion": opinions[0],
        "opinions": list(opinions),
        "pad_s": PAD._asdict(),  # played before and after a doubtful run
        "doubtful_below": DOUBTFUL_CONFIDENCE,  # a word's confidence under this is highlighted
        "ratio_word_vs_utterance_all": headline,
        "ratio_word_vs_utterance_kept": kept,  # the review stage's input: the filter's kept labels
        "corpora": corpora,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({"all": headline, "kept": kept}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
