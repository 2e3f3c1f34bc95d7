"""Short-window teacher: base adapted to 10 s windows by self-distillation, against the 30 s teacher.

    python benchmarks/short_window.py [--adapt-first 2000] [--steps 200] [--test-first N] [--threads 2]

1. Adapt: the first ``--adapt-first`` clips of speechocean762's pool (its speakers are not in its
   test set) are labeled by base at 30 s, greedily (the targets), and a copy of base learns to
   write them in 10 s windows (``teacher.short_window``: LoRA on the encoder by default).
2. Measure, on speechocean762 test and AN4 test (the first ``--test-first`` lines of each;
   neither is used for adapting), labeling with: the 30 s teacher (the labeler's defaults at
   ``--full-context``: the reference), base unadapted at ``--min-window`` 20 and 10, and the
   adapted teacher at ``--min-window`` 10. Per system: exact agreement with the 30 s teacher
   after Whisper's English normaliser (the bar: >= 97% on both whole sets; ``bar_met`` is
   false on a ``--test-first`` subset, whose own verdict is kept beside it), WER against the
   references (format-insensitive and whisper_en) and labeling RTFx, in one run, one after
   another on the same machine.

Everything is kept under ``runs/short_window/`` and resumed: a rerun labels nothing twice and
trains only when the derived teacher there was made from other data or settings. Writes
``benchmarks/results/short_window.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from asr_distill.jsonl import atomic_write_text, read_jsonl
from asr_distill.label import LabelRun, label_to_file
from asr_distill.metrics import word_error_rate
from asr_distill.teacher import load_teacher
from asr_distill.teacher.options import FULL_CONTEXT, ContextFloor, LabelOptions
from asr_distill.teacher.precision import machine
from asr_distill.teacher.resolve import Teacher
from asr_distill.teacher.short_window import AdaptConfig, adapt, agreement, derivation, save_derived, targets

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WORK = ROOT / "runs" / "short_window"
RESULTS = ROOT / "benchmarks" / "results" / "short_window.json"
BAR = 0.97  # the issue's: agreement with the 30 s teacher on both test sets
REFERENCE = "full_30s"
EXAMPLES = 10  # differing utterances shown per system, with both texts


def subset(src: Path, first: int | None, out: Path) -> Path:
    """The first ``first`` lines of ``src`` (all when None), with absolute audio paths.

    Each line gets an explicit ``id`` (its ``utt_id``, else its audio file's stem), so copies
    of the audio elsewhere (``self_agreement.py``) keep the ids.
    """
    lines = [json.loads(x) for x in src.read_text().splitlines() if x.strip()][: first or None]
    for d in lines:
        d["audio_filepath"] = str((src.parent / d["audio_filepath"]).resolve())
        d.setdefault("id", d.get("utt_id") or Path(d["audio_filepath"]).stem)
    atomic_write_text(out, "".join(json.dumps(d) + "\n" for d in lines))
    return out


def _derived_teacher(parent: Teacher, args) -> tuple[Teacher, dict]:
    """The adapted teacher under ``WORK``: reused when its provenance matches, else adapted now."""
    n = args.adapt_first or "all"
    pool = subset(args.so762 / "pool.jsonl", args.adapt_first, WORK / f"pool.first-{n}.jsonl")
    data = targets(parent, pool, WORK / f"pool.first-{n}.targets.jsonl", precision=args.precision)
    config = AdaptConfig(
        window_s=10.0,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        lora_rank=args.lora_rank,
        train_encoder_layers=args.train_encoder_layers,
        kl_weight=args.kl_weight,
        seed=args.seed,
    )
    out, stats = WORK / f"{parent.name}_w10.pt", WORK / f"{parent.name}_w10.adapt.json"
    if out.is_file() and stats.is_file():
        done = load_teacher(out)
        known = derivation(done)
        if (
            known.config == config
            and known.data == data.data
            and known.parent_weights_sha256 == parent.weights_sha256
        ):
            print(f"reusing {out} ({known.config.steps} steps on {known.data.clips} clips)", flush=True)
            return done, json.loads(stats.read_text())
    start = time.perf_counter()
    adapted = adapt(parent, data, config)
    save_derived(adapted, out)
    cost = {
        "seconds_per_step": adapted.seconds_per_step,
        "wall_s": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_text(stats, json.dumps(cost, indent=2) + "\n")
    return load_teacher(out), cost


def _systems(parent: Teacher, derived: Teacher) -> dict[str, tuple[Teacher, LabelOptions]]:
    return {
        REFERENCE: (parent, LabelOptions(windows=FULL_CONTEXT)),
        "base_w20": (parent, LabelOptions(windows=ContextFloor(20.0))),
        "base_w10": (parent, LabelOptions(windows=ContextFloor(10.0))),
        "adapted_w10": (derived, LabelOptions(windows=ContextFloor(10.0))),
    }


def label_timed(manifest: Path, out: Path, run: LabelRun) -> tuple[Path, dict]:
    """Label ``manifest`` into ``out`` (resuming); RTFx kept from the run that labeled it all at once."""
    timing = out.with_name(f"{out.stem}.timing.json")
    if timing.is_file():
        return out, json.loads(timing.read_text())
    stats = label_to_file(manifest, out, run)
    row = {"audio_s": round(stats.audio_s, 2), "wall_s": round(stats.wall_s, 2), "rtfx": round(stats.rtfx, 2)}
    row["partial"] = stats.already_done > 0  # a resumed run: the RTFx covers only what it labeled
    atomic_write_text(timing, json.dumps(row, indent=2) + "\n")
    print(f"{manifest.stem} -> {out.name}: {row}", flush=True)
    return out, row


def compare(paths: dict[str, Path], timing: dict[str, dict], reference: str = REFERENCE) -> dict:
    """Agreement with ``paths[reference]``, WER against the transcripts, RTFx: per system, on one set."""
    ref = {d["id"]: d for d in read_jsonl(paths[reference])}
    out = {"utterances": len(ref), "audio_s": round(sum(d["duration"] for d in ref.values()), 2)}
    out["agreement"], out["wer"], out["rtfx"], out["examples"] = {}, {}, timing, {}
    refs = [ref[i]["ref_text"] or "" for i in ref]
    for name, path in paths.items():
        labels = {d["id"]: d for d in read_jsonl(path)}
        if name != reference:
            a = agreement(paths[reference], path, "whisper_en")
            out["agreement"][name] = a.to_dict()
            out["examples"][name] = [
                {"id": i, reference: ref[i]["text"], name: labels[i]["text"]} for i in a.differing[:EXAMPLES]
            ]
        hyps = [labels[i]["text"] for i in ref]
        out["wer"][name] = {
            n: round(word_error_rate(refs, hyps, n).wer, 2) for n in ("format_insensitive", "whisper_en")
        }
    return out


def _measure(manifest: Path, systems: dict, args) -> dict:
    """Label ``manifest`` with every system, then compare them with the 30 s teacher."""
    paths, timing = {}, {}
    for name, (teacher, options) in systems.items():
        run = LabelRun(teacher, options=options, batch_size=args.batch_size, precision=args.precision)
        paths[name], timing[name] = label_timed(
            manifest, manifest.with_name(f"{manifest.stem}.{name}.jsonl"), run
        )
    return compare(paths, timing)


def add_labeling_args(ap: argparse.ArgumentParser) -> None:
    """The flags every labeling of the two test sets takes here and in ``self_agreement.py``."""
    ap.add_argument("--teacher", default="base")
    ap.add_argument("--so762", type=Path, default=DATA / "speechocean762")
    ap.add_argument("--an4", type=Path, default=DATA / "an4")
    ap.add_argument("--test-first", type=int, default=None, help="test clips per set (default: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="fp32", help="encoder dtype for every labeling (default fp32)")
    ap.add_argument("--threads", type=int, default=2)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_labeling_args(ap)
    ap.add_argument("--adapt-first", type=int, default=None, help="pool clips adapted on (default: all)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--train-encoder-layers", type=int, default=0)
    ap.add_argument("--kl-weight", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args()


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    parent = load_teacher(args.teacher)
    derived, cost = _derived_teacher(parent, args)
    systems = _systems(parent, derived)
    m = args.test_first or "all"
    sets = {
        "speechocean762": subset(
            args.so762 / "test.jsonl", args.test_first, WORK / f"so762_test.first-{m}.jsonl"
        ),
        "an4": subset(args.an4 / "test.jsonl", args.test_first, WORK / f"an4_test.first-{m}.jsonl"),
    }
    measured = {name: _measure(path, systems, args) for name, path in sets.items()}
    fractions = {name: r["agreement"]["adapted_w10"]["fraction"] for name, r in measured.items()}
    result = {
        "agreement": {name: r["agreement"] for name, r in measured.items()},
        "bar": {
            "threshold": BAR,
            "normaliser": "whisper_en",
            "system": "adapted_w10",
            "reference": REFERENCE,
        },
        "bar_met": args.test_first is None and all(f >= BAR for f in fractions.values()),
        "bar_met_on_the_subsets_measured": all(f >= BAR for f in fractions.values()),
        "whole_test_sets": args.test_first is None,
        "wer": {name: r["wer"] for name, r in measured.items()},
        "rtfx": {name: r["rtfx"] for name, r in measured.items()},
        "test_sets": {
            name: {"utterances": r["utterances"], "audio_s": r["audio_s"]} for name, r in measured.items()
        },
        "examples": {name: r["examples"] for name, r in measured.items()},
        "adaptation": cost,
        "provenance": derived.derived,
        "derived_weights_sha256": derived.weights_sha256,
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({"agreement_adapted_w10": fractions, "bar_met": result["bar_met"]}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
