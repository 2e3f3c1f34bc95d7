"""``asr-distill filter``: correct, score and filter teacher labels, each drop with a reason."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "filter",
        help="score teacher labels, correct them lightly, keep or drop each with a reason",
        description="Reads LABELS (written by `asr-distill label`) and writes OUT/kept.jsonl (a NeMo "
        "manifest whose text is the corrected label, with the corrections, verdicts, scores and teacher "
        "provenance), OUT/dropped.jsonl (with reasons) and OUT/filter_report.json. With reference "
        "transcripts in the labels (ref_text) it also writes OUT/calibration.json and OUT/calibration.png. "
        "The confidence threshold is, in order: --threshold, --keep (reference-free), --target-wer "
        "(calibrated on the references), or the score's documented default.",
    )
    p.add_argument("labels", help="teacher labels (JSON Lines from `asr-distill label`)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--second", help="the same audio labeled by a second model: enables the agreement scores")
    p.add_argument(
        "--score",
        help="confidence score for low_confidence (default: agreement_entropy with "
        "--second, else avg_logprob); see --list-scores",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, help="keep labels whose score is >= this")
    g.add_argument("--target-wer", type=float, help="label WER (%%) to meet, calibrated on ref_text")
    g.add_argument("--keep", type=float, help="fraction of all labels to keep (reference-free)")
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
    p.add_argument("--list-scores", action="store_true", help="print the confidence scores and exit")
    p.set_defaults(func=run)


def _print_scores() -> None:
    from ..calibrate import DEFAULT_THRESHOLDS
    from ..confidence import SCORES

    for s in SCORES.values():
        default = DEFAULT_THRESHOLDS.get(s.name)
        extra = (" [needs --second]" if s.needs_second else "") + (
            f" [default >= {default}]" if default is not None else ""
        )
        print(f"{s.name:28s} {s.description}{extra}")


def run(args) -> int:
    if args.list_scores:
        _print_scores()
        return 0
    from ..calibrate import calibrate, write_calibration
    from ..correct import LEXICON_MIN_SIMILARITY, CorrectionConfig, read_lexicon
    from ..filter import MIN_AGREEMENT, FilterConfig, filter_labels, read_labels
    from ..jsonl import atomic_write_jsonl, atomic_write_text

    labels_path = Path(args.labels)
    if not labels_path.is_file():
        raise SystemExit(
            f"error: {labels_path} does not exist (give the labels written by `asr-distill label`)"
        )
    labels = read_labels(labels_path)
    if not labels:
        raise SystemExit(f"error: {labels_path} holds no labels")
    second = None
    if args.second:
        second = {lab.id: lab for lab in read_labels(args.second)}
        missing = sum(lab.id not in second for lab in labels)
        if missing:
            print(
                f"warning: {missing} labels have no second decoding in {args.second}; "
                "their agreement is undefined (they count as least confident)"
            )
    correction = CorrectionConfig(
        normaliser=args.normaliser,
        lexicon=read_lexicon(args.lexicon) if args.lexicon else (),
        lexicon_min_similarity=args.lexicon_similarity or LEXICON_MIN_SIMILARITY,
    )
    config = FilterConfig(
        score=args.score,
        threshold=args.threshold,
        keep=args.keep,
        target_wer=args.target_wer,
        language=None if args.language == "any" else args.language,
        min_agreement=MIN_AGREEMENT if args.min_agreement is None else args.min_agreement,
        correction=correction,
    )
    result = filter_labels(labels, second=second, config=config)
    out = Path(args.out)
    atomic_write_jsonl(out / "kept.jsonl", (p.to_dict() for p in result.kept))
    atomic_write_jsonl(out / "dropped.jsonl", (p.to_dict() for p in result.dropped))
    report = result.report.to_dict()
    report["labels"] = str(labels_path)
    report["second_labels"] = args.second
    cal = result.calibration
    if cal is None and result.report.references:
        # References present: the curves are informative even when they did not pick the threshold.
        every = [*result.kept, *result.dropped]
        ok = [
            p
            for p in every
            if p.ref_text is not None and all(v.keep for v in p.filter_history if v.rule != "low_confidence")
        ]
        if ok:
            cal = calibrate(
                {n: [_nan(p.scores[n]) for p in ok] for n in ok[0].scores},
                [p.ref_text for p in ok],
                [p.text for p in ok],
                keep=result.report.retention if result.report.retention > 0 else 1.0,
                score=result.report.score,
                total=result.report.references,
            )
    if cal is not None:
        write_calibration(cal, out / "calibration.json", out / "calibration.png")
        report["calibration"] = str(out / "calibration.json")
    atomic_write_text(out / "filter_report.json", json.dumps(report, indent=1) + "\n")
    _summary(report, out)
    return 0


def _nan(x):
    return float("nan") if x is None else x


def _summary(r: dict, out: Path) -> None:
    thr = "keep all" if r["threshold"] is None else f">= {r['threshold']:.4g}"
    print(
        f"kept {r['kept']} of {r['utterances']} labels ({r['retention']:.1%}, {r['kept_hours']:.2f} of "
        f"{r['hours']:.2f} h) with {r['score']} {thr}: {r['threshold_note']}"
    )
    if r["by_reason"]:
        print(
            "dropped by reason: "
            + ", ".join(
                f"{k} {v['utterances']} ({v['hours'] * 60:.1f} min)" for k, v in r["by_reason"].items()
            )
        )
    if r["corrections"]:
        print("corrections: " + ", ".join(f"{k} {v}" for k, v in r["corrections"].items()))
    if r["label_wer_all"] is not None:
        print(
            f"label WER vs references ({r['wer_normaliser']}): all {r['label_wer_all']:.2f}%, kept "
            f"{r['label_wer_kept'] if r['label_wer_kept'] is not None else float('nan'):.2f}%"
        )
    print(
        f"review load: {r['review_load_min_per_h']:.1f} min of audio per hour kept for the "
        f"{r['review_fraction']:.0%} least confident"
    )
    print(
        f"wrote {out}/kept.jsonl, dropped.jsonl, filter_report.json"
        + (", calibration.json, calibration.png" if r.get("calibration") else "")
    )
