"""``asr-distill filter``: correct, score and filter teacher labels, each drop with a reason.

Reads LABELS (written by `asr-distill label`) and writes OUT/kept.jsonl (a NeMo manifest whose text
is the corrected label, with the corrections, verdicts, scores and teacher provenance),
OUT/dropped.jsonl (with reasons) and OUT/filter_report.json. With reference transcripts in the
labels (ref_text) it also writes OUT/calibration.json and OUT/calibration.png. The confidence
threshold is, in order: --threshold, --keep (reference-free), --target-wer (calibrated on the
references), or the score's documented default.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from . import add_force, add_out, subcommand

SUMMARY = "score teacher labels, correct them lightly, keep or drop each with a reason"


def add_parser(sub) -> None:
    """Add ``filter`` to the CLI's subcommands."""
    p = subcommand(sub, "filter", run, SUMMARY, __doc__)
    add_out(p, "output folder")
    p.add_argument("labels", help="teacher labels (JSON Lines from `asr-distill label`)")
    p.add_argument(
        "--second",
        action="append",
        help="the same audio labeled by a second model: enables the agreement scores. Give it again for "
        "more opinions (another model, beam search, a temperature): the consensus_* scores vote with all, "
        "the agreement scores compare with the first",
    )
    p.add_argument(
        "--score",
        help="confidence score for low_confidence (default: agreement_entropy with "
        "--second, else avg_logprob); see --list-scores",
    )
    # One of these three; FilterOptions says so when more are given.
    p.add_argument("--threshold", type=float, help="keep labels whose score is >= this")
    p.add_argument("--target-wer", type=float, help="label WER (%%) to meet, calibrated on ref_text")
    p.add_argument("--keep", type=float, help="fraction of all labels to keep (reference-free)")
    p.add_argument(
        "--keep-at-least",
        type=float,
        help="retention floor under the threshold chosen above: lowered until this fraction is kept",
    )
    p.add_argument("--lexicon", help="domain words/names, one per line: near-misses are replaced")
    p.add_argument(
        "--lexicon-similarity", type=float, default=None, help="rapidfuzz ratio 0-100 (default 85)"
    )
    p.add_argument(
        "--normaliser",
        default="spoken_form",
        help="normaliser applied to kept text ('none' keeps the teacher's form; default spoken_form)",
    )
    p.add_argument("--language", default="en", help="expected language ('any' turns wrong_language off)")
    p.add_argument("--min-agreement", type=float, default=None, help="teacher_disagreement below this (0.5)")
    p.add_argument(
        "--review-fraction",
        type=float,
        default=0.1,
        help="share of kept labels (least confident first) the report's review load counts (default 0.1)",
    )
    p.add_argument("--list-scores", action="store_true", help="print the confidence scores and exit")
    add_force(p, "write into an existing --out folder that holds files this step did not write")


def _print_scores() -> None:
    from ..quality.calibrate import DEFAULT_THRESHOLDS
    from ..quality.confidence import SCORES

    for s in SCORES.values():
        default = DEFAULT_THRESHOLDS.get(s.name)
        extra = (" [needs --second]" if s.needs_second else "") + (
            f" [default >= {default}]" if default is not None else ""
        )
        print(f"{s.name:28s} {s.description}{extra}")


def run(args) -> int:
    """Filter the labels as the parsed ``args`` say and print the report."""
    if args.list_scores:
        _print_scores()
        return 0
    from ..outputs import guard_output
    from ..quality.filter_report import format_filter_report
    from ..quality.stage import FilterOptions, run_filter

    # Every FilterOptions field is a flag of the same name.
    options = FilterOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FilterOptions)})
    out, labels = Path(args.out), Path(args.labels)
    if not labels.is_file():  # before the output folder is made
        raise SystemExit(f"error: {labels} does not exist (give the labels written by `asr-distill label`)")
    seconds = [Path(s) for s in args.second or ()]
    inputs = [p for p in (args.labels, *seconds, args.lexicon) if p]
    # --force replaces files in a folder, never a file where the folder should be
    force = args.force and (out.is_dir() or not out.exists())
    try:
        with guard_output(out, inputs=inputs, kind="filter_dir", force=force):
            run_filter(labels, out, options, second=seconds or None)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    report = json.loads((out / "filter_report.json").read_text())
    print(format_filter_report(report, out))
    return 0
