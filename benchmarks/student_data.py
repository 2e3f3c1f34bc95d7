"""What each data switch for keeping general competence costs, per epoch, on real speech.

    python benchmarks/student_data.py [--clips 20] [--epochs 2] [--out benchmarks/results/student_data.json]

In-domain: the first ``--clips`` speechocean762 pool utterances (non-native read English);
general: as many AN4 train utterances (replay pool) and half as many AN4 test ones (a named
validation set). tiny.en is teacher and student (frozen encoder, cached outputs). For each
switch alone: the one-off cache fill, the training epoch and the validation epoch, in wall
and CPU seconds (medians over epochs after the first); the waveform effects alone in CPU ms
per clip.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L

from asr_distill.audio import load_audio
from asr_distill.jsonl import atomic_write_text
from asr_distill.manifest import read_manifest
from asr_distill.student.augment import EFFECTS, WaveAugment
from asr_distill.student.data import StudentDataModule, read_items
from asr_distill.student.module import StudentModule

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SWITCHES = {
    "baseline": {},
    "replay 0.5": {"replay_ratio": 0.5},
    "augment x4 p0.5": {"augment": list(EFFECTS), "augment_prob": 0.5, "augment_copies": 1},
    "val_manifests +general": {"val_manifests": True},
}


def subset(src: Path, n: int, out: Path) -> Path:
    """The first ``n`` usable lines of ``src`` with absolute audio paths."""
    lines = []
    for r in read_manifest(src):
        if getattr(r, "text", None):
            lines.append(
                {"audio_filepath": r.audio_filepath, "duration": r.duration, "text": r.text, "id": r.id}
            )
        if len(lines) == n:
            break
    atomic_write_text(out, "".join(json.dumps(d) + "\n" for d in lines))
    return out


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class Clock(L.Callback):
    """(wall, CPU) seconds of every training epoch (its validation left out) and validation epoch.

    CPU seconds are this process's, all threads: on a shared machine they are the steadier
    measure of what a switch costs.
    """

    def __init__(self):
        self.train, self.val = [], []
        self._t = self._v = (0.0, 0.0)

    def on_train_epoch_start(self, trainer, module):
        self._t = _now()

    def on_train_epoch_end(self, trainer, module):
        wall, cpu = (b - a for a, b in zip(self._t, _now(), strict=True))
        val = self.val[-1] if len(self.val) == len(self.train) + 1 else (0.0, 0.0)
        self.train.append((wall - val[0], cpu - val[1]))

    def on_validation_epoch_start(self, trainer, module):
        self._v = _now()

    def on_validation_epoch_end(self, trainer, module):
        self.val.append(tuple(b - a for a, b in zip(self._v, _now(), strict=True)))


def _median(pairs: list[tuple[float, float]]) -> dict[str, float]:
    return {k: round(statistics.median(p[i] for p in pairs), 2) for i, k in enumerate(("wall_s", "cpu_s"))}


def run_switch(name: str, files: dict[str, Path], tmp: Path, epochs: int) -> dict:
    """One short training with ``name``'s switch on: cache fill, train and validation epoch seconds."""
    args = dict(SWITCHES[name])
    if args.pop("val_manifests", None):
        args["val_manifests"] = {"general": str(files["general_val"])}
    if "replay_ratio" in args:
        args["replay_manifest"] = str(files["replay"])
    dm = StudentDataModule(
        str(files["train"]),
        val_manifest=str(files["val"]),
        batch_size=8,
        cache_dir=str(tmp / "cache" / name.split()[0]),
        spec_augment=False,
        augment_copies=args.pop("augment_copies", 0),
        **args,
    )
    module = StudentModule(teacher="tiny.en", init="tiny.en", ce_weight=1.0, kl_weight=0.0, val_max_tokens=32)
    dm.attach(module.feature_spec())
    start = _now()
    dm.setup("fit")
    fill = [b - a for a, b in zip(start, _now(), strict=True)]
    clock = Clock()
    quiet = dict.fromkeys(
        ("logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary"), False
    )
    trainer = L.Trainer(
        max_epochs=epochs, num_sanity_val_steps=0, default_root_dir=str(tmp), callbacks=[clock], **quiet
    )
    trainer.fit(module, dm)
    later = slice(1, None) if epochs > 1 else slice(None)
    return {
        "cache_fill": {"wall_s": round(fill[0], 2), "cpu_s": round(fill[1], 2)},
        "train_epoch": _median(clock.train[later]),
        "val_epoch": _median(clock.val[later]),
        "train_items_per_epoch": dm.n_train + dm.replay_count,
        "val_items": len(dm.val_set.items),
    }


def effect_costs(manifest: Path) -> dict[str, float]:
    """CPU milliseconds per clip of each waveform effect alone (always applied, after a warm-up)."""
    audios = [load_audio(it.audio_filepath, it.offset, it.duration) for it in read_items(manifest)]
    out = {}
    for name in EFFECTS:
        aug, rng = WaveAugment((name,), 1.0), random.Random(0)
        aug(audios[0], rng)
        start = time.process_time()
        for a in audios:
            aug(a, rng)
        out[name] = round(1000 * (time.process_time() - start) / len(audios), 1)
    return out


def main() -> None:
    """Measure every switch and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/student_data.json"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="student_data_"))
    n = args.clips
    files = {
        "train": subset(SHARED / "speechocean762" / "pool.jsonl", n, tmp / "train.jsonl"),
        "val": subset(SHARED / "speechocean762" / "test.jsonl", n // 2, tmp / "val.jsonl"),
        "replay": subset(SHARED / "an4" / "train.jsonl", n, tmp / "replay.jsonl"),
        "general_val": subset(SHARED / "an4" / "test.jsonl", n // 2, tmp / "general_val.jsonl"),
    }
    result = {"clips": n, "epochs": args.epochs, "effects_ms_per_clip": effect_costs(files["train"])}
    result["switches"] = {name: run_switch(name, files, tmp, args.epochs) for name in SWITCHES}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
