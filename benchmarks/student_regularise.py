"""Per-step cost of the student's encoder-training and anti-forgetting switches on real speech.

    python benchmarks/student_regularise.py [--manifest ../shared/data/speechocean762/pool.jsonl]
        [--clips 20] [--steps 6] [--init tiny.en] [--only NAME ...]

Each setting trains ``--steps`` real steps (batch 8, fixed seed, the same clips in the same
order) in its own process, after its cache is filled; the first step is left out of the mean.
``top-N cached`` feeds the top blocks the frozen bottom's cached hidden states
(``FeatureSpec.cache_through_block``, the default); ``top-N mel`` sends log-mels and runs the
bottom each step without gradients. Writes ``benchmarks/results/student_regularise.json``:
wall and CPU seconds per step, peak RSS, trainable parameters, and the load average (shared CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "frozen": {},
    "top-2 cached": {"train_encoder_layers": 2, "_path": "cached"},
    "top-2 mel": {"train_encoder_layers": 2, "_path": "mel"},
    "top-4 cached": {"train_encoder_layers": 4, "_path": "cached"},
    "top-4 mel": {"train_encoder_layers": 4, "_path": "mel"},
    "all (unfrozen)": {"frozen_encoder": False},
    "frozen + lwf": {"lwf_weight": 0.5},
    "frozen + l2sp": {"l2sp_weight": 0.01},
    "frozen + lora8": {"lora_rank": 8},
    "top-2 cached + lora8 + lwf": {
        "train_encoder_layers": 2,
        "lora_rank": 8,
        "lwf_weight": 0.5,
        "_path": "cached",
    },
}


def _manifest(src: Path, clips: int, out: Path) -> Path:
    """``clips`` lines spread evenly over ``src`` (many speakers, children and adults), absolute paths."""
    lines = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    picked = lines[:: max(1, len(lines) // clips)][:clips]
    for d in picked:
        d["audio_filepath"] = str((src.parent / d["audio_filepath"]).resolve())
        d["id"] = d.get("utt_id") or Path(d["audio_filepath"]).stem
    out.write_text("".join(json.dumps(d) + "\n" for d in picked))
    return out


def _force_path(module, path: str | None) -> None:
    """Cache the frozen bottom's hidden states (``cached``), or send log-mels each step (``mel``)."""
    import dataclasses

    if path is None:
        return
    spec = module.feature_spec()
    if path == "cached":
        spec = dataclasses.replace(spec, frozen_encoder=True, cache_through_block=module._split)
    else:
        spec = dataclasses.replace(spec, frozen_encoder=False, cache_through_block=None)
    module.feature_spec = lambda: spec


def run_one(name: str, manifest: Path, steps: int, init: str, cache: Path) -> dict:
    import lightning as L
    import torch

    from asr_distill.student.data import StudentDataModule
    from asr_distill.student.module import StudentModule
    from asr_distill.testing.student import few_steps_trainer

    torch.set_num_threads(2)
    switches = dict(SETTINGS[name])
    path = switches.pop("_path", None)
    module = StudentModule(teacher="tiny.en", init=init, ce_weight=1.0, kl_weight=0.0, lr=1e-4, **switches)
    _force_path(module, path)
    times: list[tuple[float, float]] = []

    class Clock(L.Callback):
        def on_train_batch_start(self, *args):
            self.t = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, *args):
            times.append((time.perf_counter() - self.t[0], time.process_time() - self.t[1]))

    L.seed_everything(0)
    dm = StudentDataModule(
        str(manifest), val_fraction=0.0, batch_size=8, cache_dir=str(cache), augment_copies=0
    )
    trainer = few_steps_trainer(cache.parent / "run", steps, [Clock()])
    t0 = time.perf_counter()
    trainer.fit(module, dm)
    kept = times[1:] or times
    return {
        "setting": name,
        "wall_s_per_step": sum(w for w, _ in kept) / len(kept),
        "cpu_s_per_step": sum(c for _, c in kept) / len(kept),
        "steps_timed": len(kept),
        "fit_wall_s_incl_cache": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable_params": sum(p.numel() for p in module.model.parameters() if p.requires_grad),
        "load_avg_1min": os.getloadavg()[0],
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=ROOT.parent / "shared/data/speechocean762/pool.jsonl")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--init", default="tiny.en")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_regularise")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "clips.jsonl"
    if args._one:
        out = run_one(args._one, manifest, args.steps, args.init, args.work / "cache")
        print("RESULT " + json.dumps(out), flush=True)
        return
    _manifest(args.manifest, args.clips, manifest)
    results = []
    for name in args.only or SETTINGS:
        cmd = [
            sys.executable,
            __file__,
            "--_one",
            name,
            "--steps",
            str(args.steps),
            "--init",
            args.init,
            "--work",
            str(args.work),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{name} failed")
        results.append(json.loads(line[-1][7:]))
        r = results[-1]
        print(
            f"{name:28s} {r['wall_s_per_step']:6.2f} s/step wall {r['cpu_s_per_step']:6.2f} cpu "
            f"{r['peak_rss_mb']:7.0f} MB {r['trainable_params'] / 1e6:6.2f}M trainable "
            f"load {r['load_avg_1min']:.1f}",
            flush=True,
        )
    out = ROOT / "benchmarks" / "results" / "student_regularise.json"
    out.write_text(json.dumps({"clips": args.clips, "init": args.init, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
