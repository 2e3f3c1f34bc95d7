"""How far the out-of-domain verdict on a student moves when the test audio changes inaudibly.

    python benchmarks/ood_jitter.py [--students NAME=CHECKPOINT ...] [--an4 ../shared/data/an4]

The generalisation bar out of domain (``generalisation.out_of_domain``) asks each seed's
student to be at most 0.3 points worse than tiny.en on AN4 test (130 utterances, 792
reference words: 0.3 points is 2.4 words), not significantly worse, with no more
insertions. This evaluates tiny.en, the teacher (base) and each student, with the
evaluation's guarded search and the bar's normaliser, on AN4 test as recorded and on two
copies a listener cannot tell apart from it (``self_agreement``'s perturbations: 5 ms of
digital silence before each clip, white noise 60 dB under each clip), and checks the bar
per student per copy with the generalisation benchmark's own rule. A verdict that flips
between copies is decided by the decoding's own noise, not by what the student learned.

Default students: the speechocean recipe's seeds 0-2 from ``generalisation.py``
(``runs/generalisation/speechocean-small/seed<k>/export/student.pt``). Decodings are kept
under ``runs/ood_jitter/`` and reused. Writes ``benchmarks/results/ood_jitter.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from asr_distill.evaluate import Decoding, Scoring, evaluate
from asr_distill.jsonl import atomic_write_text
from asr_distill.teacher.precision import machine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import NORMALISER, OOD_MAX_DELTA, model_figures, out_of_domain  # noqa: E402
from self_agreement import perturbed  # noqa: E402  (the same inaudible copies)
from short_window import subset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "runs" / "ood_jitter"
RESULTS = ROOT / "benchmarks" / "results" / "ood_jitter.json"
RECIPE_RUNS = ROOT / "runs" / "generalisation" / "speechocean-small"
COPIES = ("shift_5ms", "noise_60db")
BASELINE = "tiny.en"
TEACHER = "teacher"  # base, decoded beside them: the bar's rule reads every model's figures


def copy_figures(evaluation: dict, students: list[str]) -> dict:
    """One copy (a set of evaluate's ``summary.json``): tiny.en, and each student with the bar's verdict."""
    by_name = {m["model"]: model_figures(m) for m in evaluation["models"]}
    p = {(c["a"], c["b"]): c["p_value"] for c in evaluation["comparisons"]}
    out = {"tiny_en": by_name[BASELINE], "teacher": by_name[TEACHER], "students": {}}
    for name in students:
        figures = {"student": by_name[name], "tiny_en": by_name[BASELINE], "teacher": by_name[TEACHER]}
        figures["p_student_vs_tiny_en"] = p[(name, BASELINE)]
        out["students"][name] = by_name[name] | {"bar": out_of_domain(figures)}
    return out


def rows(copies: dict) -> list[dict]:
    """One flat row per copy and model (the same keys in each), for the rendered table."""
    out = []
    for copy, fig in copies.items():
        models = {BASELINE: fig["tiny_en"], TEACHER: fig["teacher"]} | fig["students"]
        for name, f in models.items():
            bar = f.get("bar", {})
            out.append(
                {"copy": copy, "model": name, "wer": f["wer"], "insertions": f["insertions"]}
                | {k: bar.get(k) for k in ("delta_vs_tiny_en", "p_student_vs_tiny_en", "pass")}
            )
    return out


def flips(copies: dict, students: list[str]) -> dict:
    """Per student: the bar's verdict on each copy, and whether the copies disagree."""
    verdicts = {s: {c: copies[c]["students"][s]["bar"]["pass"] for c in copies} for s in students}
    return {s: {"verdicts": v, "flips": len(set(v.values())) > 1} for s, v in verdicts.items()}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--an4", default=str(ROOT.parent / "shared" / "data" / "an4"))
    ap.add_argument(
        "--students",
        nargs="+",
        default=[f"seed{k}={RECIPE_RUNS / f'seed{k}' / 'export' / 'student.pt'}" for k in range(3)],
        help="NAME=CHECKPOINT per student (default: the speechocean recipe's seeds 0-2)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--out", default=str(RESULTS))
    return ap.parse_args()


def main() -> None:
    args = _args()
    manifest = Path(args.an4) / "test.jsonl"
    if not manifest.is_file():
        print(f"skipped: AN4 test not found at {manifest} (the data sits in ../shared beside the checkout)")
        return
    students = [s.split("=", 1) for s in args.students]
    missing = [path for _, path in students if not Path(path).is_file()]
    if missing:
        print(
            f"skipped: no student checkpoint at {', '.join(missing)} (run benchmarks/generalisation.py first)"
        )
        return
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    local = subset(manifest, None, work / "an4_test.jsonl")  # the copies go beside it, not the data
    sets = {"as_recorded": local} | {c: perturbed(local, c) for c in COPIES}
    models = [(BASELINE, BASELINE), (TEACHER, "base")] + [(name, path) for name, path in students]
    evaluate(
        models,
        {"in_domain": sets["as_recorded"]} | {c: sets[c] for c in COPIES},
        work / "eval",
        scoring=Scoring(NORMALISER),
        decoding=Decoding(device="cpu"),
    )
    names = [name for name, _ in students]
    summary = json.loads((work / "eval" / "summary.json").read_text(encoding="utf-8"))
    copies = {c: copy_figures(summary["sets"]["in_domain" if c == "as_recorded" else c], names) for c in sets}
    result = {
        "rows": rows(copies),
        "flips": flips(copies, names),
        "copies": copies,
        "bar": f"student <= {OOD_MAX_DELTA} points worse than tiny.en, not significantly worse, "
        "insertions <= tiny.en's (generalisation.out_of_domain)",
        "normaliser": NORMALISER,
        "students": dict(students),
        "data": str(manifest),
        "machine": machine() | {"torch_threads": args.threads},
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    for c, fig in copies.items():
        row = " ".join(
            f"{s} {f['wer']:.2f} ({'pass' if f['bar']['pass'] else 'fail'})"
            for s, f in fig["students"].items()
        )
        print(f"{c}: tiny.en {fig['tiny_en']['wer']:.2f}; {row}")


if __name__ == "__main__":
    main()
