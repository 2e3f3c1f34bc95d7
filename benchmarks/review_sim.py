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
the label errors per minute listened of whole-utterance review. Beside each ratio, its
ceiling: the ratio if every highlighted word played were wrong.

``--calibrate-every N`` also labels and filters a disjoint subset (every Nth line from
``--calibrate-from``) as a user's transcribed clips, fits the word confidence on it
(:mod:`asr_distill.quality.word_calibration`, what ``review export --calibrate-on`` does) and
repeats the simulation with the fitted confidences (``calibrated``).

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
from asr_distill.quality.word_calibration import WordCalibration, fit_word_calibration, read_transcribed

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
POOLS = {"an4": DATA / "an4" / "train.jsonl", "speechocean762": DATA / "speechocean762" / "pool.jsonl"}
BUDGETS_MIN = (0.5, 1.0, 2.0)
BAR = 2.0
CALIBRATION_OFFSET = 2  # the transcribed subset that fits the word calibration starts at line 2 by default


def subset(pool: Path, every: int, out: Path, offset: int = 0) -> Path:
    """Every ``every``-th line of ``pool`` from line ``offset`` (0: the first), with absolute audio paths."""
    lines = [json.loads(x) for x in pool.read_text().splitlines() if x.strip()][offset::every]
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
    offset: int = 0,
) -> Path:
    """Label (base with word timings, each second opinion) and filter; returns the filter's folder.

    ``opinions`` are ``MODEL``, ``MODEL:BEAM`` (beam search width) or ``MODEL@T[/SEED]``
    (a sample at temperature T, see :func:`parse_opinion`): the first is what the
    filter's agreement score compares with, all of them vote on each word's confidence.
    ``keep_at_least`` is the filter's retention floor (``--keep-at-least``), as a recipe sets it.
    ``offset`` starts the subset at another line (a disjoint subset, in a folder of its own).
    Reruns resume.
    """
    d = work / (f"{corpus}_from{offset}" if offset else corpus)
    manifest = subset(POOLS[corpus], every, d / "subset.jsonl", offset)
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
    """Every mode at every budget, word vs utterance removed-per-minute ratios, and their ceiling.

    The ceiling is the ratio word review would reach if every highlighted word it played
    were wrong: what better flags alone could buy with the same spans.
    """
    rows = {m: [asdict(simulate(labels, m, b)) for b in budgets] for m in MODES}
    ratios, ceiling = [], []
    for u, w in zip(rows["utterance"], rows["word"], strict=True):
        rate = u["removed_per_min"]
        ratios.append(round(w["removed_per_min"] / rate, 3) if rate else None)
        heard = w["changeable"] / w["listened_min"] if w["listened_min"] else 0.0
        ceiling.append(round(heard / rate, 3) if rate else None)
    return {
        "budgets_min": budgets,
        "modes": rows,
        "ratio_word_vs_utterance": ratios,
        "ceiling_word_vs_utterance": ceiling,
    }


def queue_budgets(labels) -> tuple[float, list[float]]:
    """Minutes the whole word queue plays (every highlighted run heard), and the budgets with it."""
    whole = simulate(labels, "word", 1e9).listened_min
    return whole, sorted({*BUDGETS_MIN, round(whole, 3)})


def calibrate(filtered: Path) -> WordCalibration:
    """The word calibration fitted on a filter's labels, kept and dropped (they carry transcripts)."""
    return fit_word_calibration(read_transcribed(filtered))


def evaluate(
    filtered: Path,
    pads: list[Pad] = (),
    thresholds: list[float] = (),
    calibration: WordCalibration | None = None,
) -> dict:
    """The simulation on the kept labels and on all labels, at fixed budgets and the whole word queue.

    Each part also gets its word-confidence table (how often a word of each confidence is
    wrong, and how many of the errors the queue can reach) and, with ``pads`` or
    ``thresholds``, the ratios at other pads or doubtful-word thresholds. With a
    ``calibration`` (fitted on other labels), ``calibrated`` holds the same comparison and
    table with every word confidence replaced by the calibrated one.
    """
    kept = read_pseudo_labels(filtered / "kept.jsonl")
    every = kept + read_pseudo_labels(filtered / "dropped.jsonl")
    out = {}
    for name, labels in (("kept", kept), ("all", every)):
        whole, budgets = queue_budgets(labels)
        out[name] = {
            "labels": len(labels),
            "audio_min": round(sum(p.duration for p in labels) / 60, 3),
            "with_word_timings": sum(bool(p.words) for p in labels),
            "with_word_confidence": sum(bool(p.word_confidence) for p in labels),
            "word_queue_min": whole,
            **compare(labels, budgets),
            "confidence": confidence_table(labels),
        }
        if pads:
            out[name]["ratio_by_pad"] = pad_sweep(labels, budgets, pads)
        if thresholds:
            out[name]["ratio_by_threshold"] = threshold_sweep(labels, budgets, thresholds)
        if calibration is not None:
            tuned = calibration.apply(labels, pool=every)  # a word's share is its share of the pool
            tuned_budgets = queue_budgets(tuned)[1]
            out[name]["calibrated"] = {**compare(tuned, tuned_budgets), "confidence": confidence_table(tuned)}
    return out


def check_disjoint(every: int, calibrate_every: int, offset: int, ap: argparse.ArgumentParser) -> None:
    """Refuse a calibration subset that shares a line with the reviewed one."""
    reviewed = set(range(0, every * calibrate_every, every))
    if reviewed & set(range(offset % calibrate_every, every * calibrate_every, calibrate_every)):
        ap.error(
            f"--calibrate-every {calibrate_every} from line {offset} shares lines with --every {every}: "
            "pick another"
        )


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
    ap.add_argument(
        "--calibrate-every",
        type=int,
        help="also fit the word confidence on a transcribed subset disjoint from the reviewed one "
        "(every Nth pool line from --calibrate-from, labeled and filtered alike) and simulate "
        "review with it",
    )
    ap.add_argument(
        "--calibrate-from",
        type=int,
        default=CALIBRATION_OFFSET,
        help="the pool line the calibration subset starts at (another gives another subset)",
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
        cal, fitted = None, {}
        if args.calibrate_every:
            check_disjoint(every, args.calibrate_every, args.calibrate_from, ap)
            dev = prepare(
                corpus, args.calibrate_every, args.work, floor or None, opinions, args.calibrate_from
            )
            cal = calibrate(dev)
            fitted = {
                "calibration": {"every": args.calibrate_every, "offset": args.calibrate_from, **asdict(cal)}
            }
        corpora[corpus] = {
            "every": every,
            "keep_at_least": floor or None,
            **fitted,
            **evaluate(filtered, args.sweep_pad, args.sweep_threshold, cal),
        }
    headline = {c: r["all"]["ratio_word_vs_utterance"] for c, r in corpora.items()}
    kept = {c: r["kept"]["ratio_word_vs_utterance"] for c, r in corpora.items()}
    tuned = {
        f"ratio_word_vs_utterance_calibrated_{part}": {
            c: r[part]["calibrated"]["ratio_word_vs_utterance"] for c, r in corpora.items()
        }
        for part in ("all", "kept")
        if args.calibrate_every
    }
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
        **tuned,
        "corpora": corpora,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({"all": headline, "kept": kept}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
