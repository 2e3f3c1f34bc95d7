"""Reliability at scale: fault campaign, bad-input corpus, memory on 100k lines, 1 vs 2 workers.

    python benchmarks/reliability.py [--kills 5] [--copies 6] [--workers-clips 100]
                                     [--rss-seconds 60] [--an4 ../shared/data/an4]

Writes ``benchmarks/results/reliability.json``. Sections, run one after another (never two
heavy jobs at once, the cores are shared):

1. **campaign** (``scripts/fault_campaign.py``): kill -9 at random points + resume, for the
   one-process CLI, for 2 workers (the parent killed alone), for the whole pipeline
   (``asr-distill run``) and for training; a second writer for each; a read-only output
   folder and a full disk for the labeler. ``kills``/``lost``/``duplicated`` sum over the
   label and pipeline targets; training reports its kills and resumes that did not start at
   the checkpoint's step.
2. **bad inputs**: every case of ``tests/bad_inputs.write_job_manifest`` (audio files, broken
   manifest lines, an hour-long file) in one manifest, through ``asr-distill label`` as a user
   runs it; a case is handled when its outcome (label, or skip reason) is the expected one.
   Plus ``tests/bad_inputs.config_cases``: bad YAML configs through ``asr-distill run`` and
   ``train``, handled when the exit code is 2 and the message names the key.
2b. **hostile** (``--only hostile`` runs it alone): every case of ``tests/bad_inputs.HOSTILE_CASES``
   (outputs that would clobber data, held locks, crafted checkpoints, broken manifests and
   edits, absurd audio, huge references) through the ``asr-distill`` command line, with the
   checks of tests/test_hostile*.py: ``handled``, ``lost`` (good data changed or gone),
   ``code_executed`` (a payload ran), ``tracebacks`` (a traceback instead of one line).
3. **memory**: a generated 100k-line manifest of short real clips. Labeling all of it takes
   hours here, so (a) a fresh run labels for ``--rss-seconds`` and is then killed, with RSS
   sampled every 0.5 s (flat = no growth per labeled line), and (b) a resume where all but the
   last 200 ids are already in the output (lines copied from (a) with new ids): it reads
   the whole manifest, holds the done ids, labels the rest and reports WER over the whole file.
   ``peak_rss_mb_100k`` is the larger peak of the two (the CLI process, psutil RSS).
4. **workers**: base teacher on the same AN4 train clips with ``label_parallel`` at 1 and 2
   workers (2 cores: 1 process x 2 threads vs 2 processes x 1 thread). RTFx is audio seconds
   over the job's wall time, spawn and model load included; ``labeling_rtfx`` excludes them.
5. **loader overlap**: the same clips decoded alone, and labeled in-process with 0 and 2
   loader threads: how much of the decode time the thread pool hides behind the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from asr_distill.testing.cli import label_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
SHARED_AN4 = ROOT.parent / "shared" / "data" / "an4"
sys.path.insert(0, str(ROOT / "tests"))

RSS_SAMPLE_S = 0.5
MEMORY_LINES = 100_000
RESUME_LEFT = 200  # default of --resume-left


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- 1. campaign ---------------------------------------------------------------------------


def run_campaign(args, work: Path) -> dict:
    from asr_distill.testing import fault_campaign as fc

    manifest = fc.an4_manifest(work / "campaign_manifest.jsonl", args.copies)
    targets = [
        fc.label_target(manifest, "tiny.en", 4, workers=1),
        fc.label_target(manifest, "tiny.en", 4, workers=2),
        fc.run_target(manifest, "tiny.en", 4),
        fc.train_target(manifest),
    ]
    # targets not named in --campaign-targets keep their previous results
    previous = {r["target"]: r for r in args.previous.get("campaign", {}).get("results", [])}
    results = []
    for target in targets:
        if args.campaign_targets and target.name not in args.campaign_targets:
            if target.name in previous:
                results.append(previous[target.name])
            continue
        _log(f"campaign {target.name}")
        results.append(
            fc.campaign(target, work / target.name, args.kills, args.seed, faults=target.name == "label")
        )
    return {"manifest_lines": 8 * args.copies, "results": results}


# --- 2. bad inputs -------------------------------------------------------------------------


def run_bad_inputs(work: Path) -> dict:
    from bad_inputs import job_case_names, observed_outcomes, write_job_manifest

    speech = ROOT / "tests" / "fixtures" / "an4" / "audio" / "an406-fcaw-b.flac"
    manifest, expected = write_job_manifest(work / "bad", speech)
    out = work / "bad" / "out" / "labels.jsonl"
    _log("bad inputs through asr-distill label")
    start = time.perf_counter()
    proc = subprocess.run(
        label_command(manifest, out, "--no-progress"),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    labels = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    skip_file = out.with_name("labels.skips.jsonl")
    skips = [json.loads(x) for x in skip_file.read_text(encoding="utf-8").splitlines()]
    seen = observed_outcomes(labels, skips)
    messages = {}
    for d in skips:
        messages.setdefault(d["id"].split("@")[0], d["message"])
    cases = {
        k: {
            "expected": sorted(v),
            "observed": sorted(seen.get(k, set())),
            "ok": seen.get(k) == v,
            "message": messages.get(k),
        }
        for k, v in expected.items()
    }
    handled = sum(len(v["expected"]) if k == "duplicate_id" else 1 for k, v in cases.items() if v["ok"])
    configs = run_config_cases(work / "configs")
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 1),
        "tried": job_case_names(expected) + len(configs),
        "handled": handled + sum(c["ok"] for c in configs.values()),
        "labels": len(labels),
        "skips": len(skips),
        "unexpected_ids": sorted(set(seen) - set(expected)),
        "cases": cases,
        "config_cases": configs,
    }


def run_config_cases(folder: Path) -> dict:
    """Bad YAML configs through ``asr-distill run`` / ``train``: exit 2, the key named, no work done."""
    from bad_inputs import config_cases

    _log("bad configs through asr-distill run / train")
    out = {}
    for case in config_cases(folder):
        proc = subprocess.run(
            [sys.executable, "-m", "asr_distill.cli", *case.argv], capture_output=True, text=True, cwd=ROOT
        )
        ok = (
            proc.returncode == 2
            and case.names in proc.stderr
            and "Traceback" not in proc.stderr
            and not (folder / "run").exists()
        )
        message = [x for x in proc.stderr.splitlines() if "error" in x.lower()]
        out[case.name] = {
            "rc": proc.returncode,
            "ok": ok,
            "expected_in_message": case.names,
            "message": (message[0] if message else proc.stderr.strip()[-300:])[:400],
        }
    return out


# --- 2b. hostile inputs --------------------------------------------------------------------

PAYLOAD_MARKER = "payload_ran"  # the folder a crafted pickle creates when it is (wrongly) run


class _Watch:
    """Wraps the in-process ``asr-distill`` the hostile cases call: did a traceback reach the user?"""

    def __init__(self, real):
        self.real, self.traceback = real, False

    def __call__(self, argv):
        rc = self.real(argv)
        err = sys.stderr.getvalue() if hasattr(sys.stderr, "getvalue") else ""
        self.traceback = self.traceback or "Traceback" in err
        return rc


def _lost(error: BaseException) -> bool:
    """A failed case that found good data changed or gone (not merely a wrong message)."""
    import traceback

    if type(error).__name__ == "DataLost":
        return True
    line = (traceback.extract_tb(error.__traceback__)[-1].line or "") if error.__traceback__ else ""
    return isinstance(error, AssertionError) and any(w in line for w in ("snapshot", "before", "read_bytes"))


def _hostile_case(name: str, fn, folder: Path, watch: _Watch) -> dict:
    folder.mkdir(parents=True)
    watch.traceback = False
    outcome: dict = {"ok": True, "lost": False}
    try:
        fn(folder)
    except Exception as e:  # the case's own assertion, or an error that escaped the CLI
        outcome = {"ok": False, "lost": _lost(e), "error": f"{type(e).__name__}: {str(e)[:300]}"}
        watch.traceback = watch.traceback or not isinstance(e, AssertionError)
    except BaseException as e:  # pytest.skip: not tried here
        if type(e).__name__ != "Skipped":
            raise
        return {"skipped": str(e)[:200]}
    outcome["code_executed"] = any(folder.rglob(PAYLOAD_MARKER))
    outcome["traceback"] = watch.traceback
    return outcome


def run_hostile(work: Path) -> dict:
    """Every case of ``bad_inputs.HOSTILE_CASES`` through the ``asr-distill`` command line.

    The checks are those of tests/test_hostile.py and tests/test_hostile_label.py (the CLI
    version where both hold one). ``handled``: the exact outcome was seen; ``lost``: good data
    changed or vanished; ``code_executed``: a crafted pickle's payload ran; ``tracebacks``: a
    traceback reached the user (or an error escaped the command) instead of one line.
    """
    import test_hostile as th
    import test_hostile_label as tl
    from bad_inputs import HOSTILE_CASES

    cases = {**th.CASES, **tl.CASES}
    watch = _Watch(th.main)
    th.main = watch
    results: dict[str, dict] = {}
    try:
        for case in HOSTILE_CASES:
            _log(f"hostile {case.name}")
            results[case.name] = {
                "class": case.klass,
                **_hostile_case(case.name, cases[case.name], work / "hostile" / case.name, watch),
            }
    finally:
        th.main = watch.real
    tried = {k: v for k, v in results.items() if "skipped" not in v}
    by_class: dict[str, dict] = {}
    for v in tried.values():
        c = by_class.setdefault(v["class"], {"tried": 0, "handled": 0})
        c["tried"] += 1
        c["handled"] += v["ok"]
    return {
        "tried": len(tried),
        "handled": sum(v["ok"] for v in tried.values()),
        "lost": sum(v["lost"] for v in tried.values()),
        "code_executed": sum(v["code_executed"] for v in tried.values()),
        "tracebacks": sum(v["traceback"] for v in tried.values()),
        "by_class": by_class,
        "skipped": sorted(set(results) - set(tried)),
        "cases": results,
    }


# --- 3. memory -----------------------------------------------------------------------------


def _clips(an4: Path, limit: int | None = None) -> list[dict]:
    """Real AN4 train clips (absolute paths), else the 8 committed fixture clips."""
    manifest = an4 / "train.jsonl"
    if not manifest.is_file():
        manifest = ROOT / "tests" / "fixtures" / "an4" / "manifest.jsonl"
    lines = [json.loads(x) for x in manifest.read_text().splitlines()][:limit]
    for d in lines:
        d["audio_filepath"] = str((manifest.parent / d["audio_filepath"]).resolve())
    return lines


def _write_big_manifest(path: Path, clips: list[dict], n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            d = dict(clips[i % len(clips)], id=f"u{i:06d}")
            f.write(json.dumps(d) + "\n")
    return path


class RssSampler:
    """Samples a process tree's RSS (MB) every ``RSS_SAMPLE_S`` in a thread."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
            except psutil.Error:
                break
            self.samples.append((round(time.monotonic() - self._t0, 2), round(rss / 2**20, 1)))
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        rss = [r for _, r in self.samples]
        if not rss:
            return {}
        half = len(rss) // 2
        return {
            "peak_mb": max(rss),
            "samples": len(rss),
            "first_mb": rss[0],
            "median_first_half_mb": sorted(rss[:half])[half // 2] if half else rss[0],
            "median_second_half_mb": sorted(rss[half:])[(len(rss) - half) // 2],
            "timeline": self.samples[:: max(1, len(self.samples) // 40)],
        }


def _label_cmd(manifest: Path, out: Path) -> list[str]:
    return label_command(manifest, out, "--batch-size", "8", "--no-progress")


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_memory(args, work: Path) -> dict:
    clips = _clips(Path(args.an4))
    manifest = _write_big_manifest(work / "big.jsonl", clips, MEMORY_LINES)
    fresh = work / "mem_fresh" / "labels.jsonl"
    _log(f"memory (a): fresh run on {MEMORY_LINES} lines for {args.rss_seconds}s")
    proc = subprocess.Popen(
        _label_cmd(manifest, fresh), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with RssSampler(proc.pid) as fresh_rss:
        time.sleep(args.rss_seconds)
    labeled = _count_lines(fresh)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    template = json.loads(fresh.read_text(encoding="utf-8").splitlines()[0])
    resume = work / "mem_resume" / "labels.jsonl"
    resume.parent.mkdir(parents=True)
    with open(resume, "w", encoding="utf-8") as f:
        for i in range(MEMORY_LINES - args.resume_left):
            f.write(json.dumps(dict(template, id=f"u{i:06d}"), ensure_ascii=False) + "\n")
    _log(f"memory (b): resume with {MEMORY_LINES - args.resume_left} ids done")
    start = time.perf_counter()
    proc = subprocess.Popen(
        _label_cmd(manifest, resume), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with RssSampler(proc.pid) as resume_rss:
        out, err = proc.communicate()
    final = _count_lines(resume)
    done = MEMORY_LINES - args.resume_left
    peaks = [s.summary().get("peak_mb", 0) for s in (fresh_rss, resume_rss)]
    return {
        "manifest_lines": MEMORY_LINES,
        "distinct_clips": len(clips),
        "fresh": {"seconds": args.rss_seconds, "labeled_before_kill": labeled, **fresh_rss.summary()},
        "resume": {
            "done_ids_at_start": done,
            "labeled": final - done,
            "final_lines": final,
            "rc": proc.returncode,
            "wall_s": round(time.perf_counter() - start, 1),
            "stdout": out.strip().splitlines()[:3],
            **resume_rss.summary(),
        },
        "peak_rss_mb_100k": max(peaks),
    }


# --- 4. workers, 5. loader overlap ---------------------------------------------------------


def run_workers(args, work: Path) -> dict:
    from asr_distill.label import LabelRun
    from asr_distill.parallel import available_cores, label_parallel

    clips = _clips(Path(args.an4), args.workers_clips)
    manifest = work / "workers.jsonl"
    manifest.write_text("".join(json.dumps(d) + "\n" for d in clips))
    out: dict = {
        "clips": len(clips),
        "audio_s": round(sum(d["duration"] for d in clips), 1),
        "cores": available_cores(),
        "teacher": "base",
    }
    texts = {}
    for n in (1, 2):
        _log(f"workers={n}")
        load = os.getloadavg()[0]
        path = work / f"w{n}" / "labels.jsonl"
        stats = label_parallel(manifest, path, LabelRun("base", batch_size=8), workers=n)
        labeling_wall = max(s.wall_s for s in stats.shards)
        out[f"workers_{n}"] = {
            "rtfx": round(stats.rtfx, 2),
            "wall_s": round(stats.wall_s, 1),
            "labeling_wall_s": round(labeling_wall, 1),
            "labeling_rtfx": round(stats.audio_s / labeling_wall, 2),
            "threads_per_worker": stats.threads_per_worker,
            "labeled": stats.labeled,
            "load_avg_1min_before": round(load, 2),
        }
        rows = map(json.loads, path.read_text(encoding="utf-8").splitlines())
        texts[n] = {d["id"]: d["text"] for d in rows}
    out["text_differences_1_vs_2"] = sum(texts[1][k] != texts[2].get(k) for k in texts[1])
    return out


def run_overlap(args, work: Path) -> dict:
    import torch

    from asr_distill.audio import load_audio
    from asr_distill.label import LabelRun, label_to_file
    from asr_distill.teacher import load_teacher

    clips = _clips(Path(args.an4), args.workers_clips)
    manifest = work / "overlap.jsonl"
    manifest.write_text("".join(json.dumps(d) + "\n" for d in clips))
    start = time.perf_counter()
    for d in clips:
        load_audio(d["audio_filepath"], 0.0, d["duration"])
    decode_s = time.perf_counter() - start
    torch.set_num_threads(2)
    teacher = load_teacher("base")
    walls = {}
    for threads in (0, 2):
        _log(f"overlap: loader_threads={threads}")
        run = LabelRun(teacher, batch_size=8, loader_threads=threads)
        stats = label_to_file(manifest, work / f"ov{threads}" / "labels.jsonl", run)
        walls[threads] = stats.wall_s
    return {
        "decode_only_s": round(decode_s, 2),
        "label_wall_s_inline": round(walls[0], 1),
        "label_wall_s_threads2": round(walls[2], 1),
        "hidden_s": round(walls[0] - walls[2], 2),
        "decode_share_of_inline": round(decode_s / walls[0], 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--copies", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers-clips", type=int, default=100)
    p.add_argument("--rss-seconds", type=float, default=60.0)
    p.add_argument(
        "--resume-left",
        type=int,
        default=RESUME_LEFT,
        help="ids the memory resume still labels (the rest of the 100k are done)",
    )
    p.add_argument("--an4", default=str(SHARED_AN4))
    p.add_argument(
        "--campaign-targets",
        nargs="+",
        default=None,
        choices=["label", "label_workers2", "run", "train"],
        help="rerun only these campaign targets; the others keep their previous results",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=["bad", "hostile", "memory", "campaign", "workers", "overlap"],
        help="sections to run; the others keep their previous results",
    )
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reliability."))
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result = dict(previous.get("details", {}))
    args.previous = dict(result)
    steps = {
        "campaign": run_campaign,
        "bad": lambda a, w: run_bad_inputs(w),
        "hostile": lambda a, w: run_hostile(w),
        "memory": run_memory,
        "workers": run_workers,
        "overlap": run_overlap,
    }
    try:
        for name in args.only:
            t = time.perf_counter()
            load = os.getloadavg()
            result[name] = steps[name](args, work)
            result[name]["section_wall_s"] = round(time.perf_counter() - t, 1)
            result[name]["load_avg_at_start"] = [round(x, 2) for x in load]
            result[name]["command"] = "python " + " ".join(["benchmarks/reliability.py", *sys.argv[1:]])
            _save(result)  # after each section: a late failure keeps the earlier figures
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in _save(result).items() if k != "details"}, indent=1))
    return 0


def _save(result: dict) -> dict:
    from asr_distill.jsonl import atomic_write_text

    summary = _headline(result)
    summary["command"] = "python " + " ".join(["benchmarks/reliability.py", *sys.argv[1:]])
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "note": "cores shared with other jobs: see each section's load_avg_at_start",
    }
    summary["details"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def _headline(r: dict) -> dict:
    results = r.get("campaign", {}).get("results", [])
    kills = [x["kill"] for x in results if x["target"] != "train"]  # units: labels, stages
    train = [x["kill"] for x in results if x["target"] == "train"]  # units: optimizer steps
    return {
        "kills": sum(k["kills"] for k in kills) if kills else None,
        "lost": sum(k["lost"] for k in kills) if kills else None,
        "duplicated": sum(k["duplicated"] for k in kills) if kills else None,
        "campaign_ok": all(x["ok"] for x in results) if results else None,
        "training_kills": sum(k["kills"] for k in train) if train else None,
        "training_resumes_wrong": sum(k["resumes_wrong"] for k in train) if train else None,
        "bad_inputs_tried": r.get("bad", {}).get("tried"),
        "bad_inputs_handled": r.get("bad", {}).get("handled"),
        "peak_rss_mb_100k": r.get("memory", {}).get("peak_rss_mb_100k"),
        "workers_1_rtfx": r.get("workers", {}).get("workers_1", {}).get("rtfx"),
        "workers_2_rtfx": r.get("workers", {}).get("workers_2", {}).get("rtfx"),
        "hostile": {
            k: r["hostile"][k]
            for k in ("tried", "handled", "lost", "code_executed", "tracebacks", "by_class")
        }
        if "hostile" in r
        else None,
    }


if __name__ == "__main__":
    sys.exit(main())
