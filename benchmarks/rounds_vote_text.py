"""Would the rounds help if the vote wrote the labels' text? Measured on a finished rounds run.

    python benchmarks/rounds_vote_text.py runs/rounds/speechocean762-small \
        --labels runs/recipes/speechocean-small/seed0/label/labels.jsonl \
        --second-labels runs/recipes/speechocean-small/seed0/label/second.jsonl \
        --out benchmarks/results/rounds_vote_text.json

The rounds (``benchmarks/rounds.py``) keep the teacher's text and let each student only vote
on which labels are kept. Iterative pseudo-labeling as NeMo and icefall run it relabels the
pool with the student instead. This reads the files a rounds run left (the teacher's and
second model's labels of the pool, each round's student decoding and kept set) and measures,
against the pool's references (measuring only, nothing is chosen by them), the label WER of
three texts for every round: the teacher's, the previous student's own, and the word-by-word
majority vote (:func:`asr_distill.quality.consensus.consensus`, the teacher winning ties) of the
teacher, the second model and every student so far; over all pool labels and over the round's
kept labels, with a paired bootstrap of each text against the teacher's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr_distill.evaluate.bootstrap import paired_bootstrap  # noqa: E402
from asr_distill.evaluate.scoring import error_rate, score_utterances  # noqa: E402
from asr_distill.jsonl import atomic_write_text, read_jsonl  # noqa: E402
from asr_distill.quality.consensus import consensus  # noqa: E402

NORMALISER = "format_insensitive"


def _texts(path: Path) -> dict[str, str]:
    return {r["id"]: r["text"] for r in read_jsonl(path)}


def _measure(ids: list[str], refs: dict[str, str], texts: dict[str, dict[str, str]]) -> dict:
    """Each text's WER over ``ids`` and its paired bootstrap against the teacher's (p: not better)."""
    ref = [refs[i] for i in ids]
    scores = {
        name: score_utterances(ref, [t[i] for i in ids], NORMALISER, ids=ids) for name, t in texts.items()
    }
    teacher = scores.pop("teacher")
    errors, words = sum(u.errors for u in teacher), sum(u.ref_words for u in teacher)
    out: dict = {"labels": len(ids), "teacher": {"wer": round(error_rate(errors, words), 4)}}
    for name, s in scores.items():
        c = paired_bootstrap(s, teacher, names=(name, "teacher"), normaliser=NORMALISER)
        out[name] = {
            "wer": c.wer_a,
            "delta_vs_teacher": c.delta,
            "ci": [c.delta_ci.low, c.delta_ci.high],
            "p_not_better": c.p_value,
        }
    return out


def measure_run(run: Path, labels: Path | None = None, second_labels: Path | None = None) -> dict:
    """Every round's label WER for the teacher's text, the last student's and the vote.

    ``labels`` / ``second_labels`` stand in for the label files the run's config names
    (a run that reused another run's labels names them where they were then).
    """
    cfg = json.loads((run / "pipeline_config.json").read_text())["label"]
    labels_path = labels or Path(cfg["labels"] or run / "label" / "labels.jsonl")
    teacher = _texts(labels_path)
    second = _texts(second_labels or Path(cfg["second_labels"] or run / "label" / "second.jsonl"))
    by_audio = {r["audio_filepath"]: r["text"] for r in read_jsonl(run / "data" / "train.jsonl")}
    refs = {
        r["id"]: by_audio[r["audio_filepath"]]
        for r in read_jsonl(labels_path)
        if r["audio_filepath"] in by_audio
    }
    rounds, students = [], []
    for k in range(2, 100):
        rd = run / f"round{k}"
        if not (rd / "filter" / "kept.jsonl").is_file():
            break
        students.append(_texts(rd / "label_student" / "labels.jsonl"))
        ids = [i for i in teacher if i in refs and i in second and all(i in s for s in students)]
        vote = {i: consensus(teacher[i], [second[i], *(s[i] for s in students)]).text for i in ids}
        texts = {"teacher": teacher, "student": students[-1], "vote": vote}
        kept = {r["id"] for r in read_jsonl(rd / "filter" / "kept.jsonl")}
        rounds.append(
            {
                "round": k,
                "voters": 2 + len(students),
                "all": _measure(ids, refs, texts),
                "kept": _measure([i for i in ids if i in kept], refs, texts),
            }
        )
    if not rounds:
        raise SystemExit(f"{run}: no finished round after the first (round2/filter/kept.jsonl)")
    return {"run": str(run), "normaliser": NORMALISER, "rounds": rounds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a rounds run's folder (benchmarks/rounds.py --out-dir)")
    ap.add_argument("--labels", type=Path, help="the teacher's labels of the pool (default: the run's)")
    ap.add_argument("--second-labels", type=Path, help="the second model's (default: the run's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rounds_vote_text.json"))
    args = ap.parse_args(argv)
    result = measure_run(args.run, args.labels, args.second_labels)
    result["command"] = "python benchmarks/rounds_vote_text.py " + " ".join(argv or sys.argv[1:])
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    for r in result["rounds"]:
        for part in ("all", "kept"):
            m = r[part]
            print(
                f"round {r['round']} {part} ({m['labels']}): teacher {m['teacher']['wer']:.2f}  "
                f"student {m['student']['wer']:.2f} (p {m['student']['p_not_better']:.3f})  "
                f"vote {m['vote']['wer']:.2f} (p {m['vote']['p_not_better']:.3f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
