"""Fault campaign: kill -9 at random points and resume, a second writer, read-only and full disks.

Pre-emptible cluster jobs die anywhere. This module runs a stage the way a user does
(its CLI, in a subprocess), hurts it, reruns the same command, and checks what is left:

- **kill -9**: killed at random points (one during start-up, the others at random
  progress points plus a random delay, so some land mid-batch or mid-write), resumed each
  time; the final ids must equal an uninterrupted run's, none lost, none twice, every
  line valid JSON.
- **lock**: a second process on the same output must refuse with a clear message while
  the first finishes untouched.
- **read-only** output folder and **full disk**: a clear error (exit code 2, the message
  says what to do) and a state that resumes to the same result once the disk is fixed.
  As root: a read-only bind mount and a small tmpfs; otherwise ``chmod`` and
  ``RLIMIT_FSIZE`` (EFBIG: "File too large" instead of "No space left").

A campaign is a function of a ``Target`` (how to run a stage into a folder, and how to
read back the units it finished), registered in ``TARGETS``:

- ``label`` and ``label_workers`` (2 processes): kills at progress points; all faults.
- ``run`` (the whole pipeline, ``asr-distill run``): kills at random moments of a clean
  run's wall time, so they land in any stage, training included; its units are label,
  kept and evaluated ids plus finished stages.
- ``train`` (``asr-distill train``): kills at random moments; each restart must report
  starting at the step of the checkpoint the kill left (``training from global step N``),
  no checkpoint may be torn, and the run must end at a clean run's final step.

    python -m asr_distill.testing.fault_campaign --kills 5 --copies 6 --json /tmp/campaign.json
    python scripts/fault_campaign.py --targets run train --kills 5   # the same, by its script

Tests and benchmarks import it (``from asr_distill.testing import fault_campaign``). It needs
a source checkout: it runs the committed AN4 clips and the support recipe's student config.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr_distill.safe_load import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]  # the source checkout (fixtures, recipes)
FIXTURE = ROOT / "tests" / "fixtures" / "an4" / "manifest.jsonl"
POLL_S = 0.05
RUN_TIMEOUT_S = 600.0
STARTUP_KILL_S = (0.2, 2.5)  # the first kill lands while the CLI imports and loads the model
MAX_EXTRA_DELAY_S = 0.6  # after a progress point, wait this much at most: mid-batch, mid-write
DISK_FRACTION = 0.5  # the full-disk case gets room for about this share of a clean run's output
LOCK_PAGES = 2  # the labels file's lock and its skips file's lock
ENOSPC_TEXT = "no space left"
EFBIG_TEXT = "file too large"


@dataclass(frozen=True)
class Target:
    """A stage to hurt: how to run it into a folder, and what it has finished there.

    Attributes:
        name: Registry key (``label``, ``label_workers``; later ``run``, ``train``).
        command: ``out`` folder -> argv that runs the stage into it (resumable).
        units: ``out`` folder -> the ids it finished, one per output line, in file order
            (duplicates kept, so a duplicate shows). Lines that are not valid JSON raise.
        lock_file: ``out`` folder -> a lock the stage holds while it runs (for the lock case).
        outputs: ``out`` folder -> files the stage appends to (checked for torn lines).
        labels: ``out`` folder -> its labels file (texts compared with the clean run's).
        timed: kill points are random moments of the clean run's wall time (a pipeline
            spends most of its time after its JSON Lines outputs are complete).
        child_locks: locks that children hold; one still held after the parent's kill is an orphan.
    """

    name: str
    command: Callable[[Path], list[str]]
    units: Callable[[Path], list[str]]
    lock_file: Callable[[Path], Path]
    outputs: Callable[[Path], list[Path]]
    labels: Callable[[Path], Path] = lambda out: out / "labels.jsonl"
    timed: bool = False  # kill at random times of a clean run's wall clock, not at progress points
    child_locks: Callable[[Path], list[Path]] = lambda out: []  # held by child processes


@dataclass
class KillReport:
    """Kills against one target, and how its resumed output compares with a clean run's."""

    target: str
    kills: int
    kill_points: list[dict] = field(default_factory=list)
    expected: int = 0
    final: int = 0
    lost: int = 0
    duplicated: int = 0
    invalid_lines: int = 0
    extra: int = 0
    text_mismatches: int = 0
    orphans: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing lost, doubled, torn or orphaned, and as many units as the clean run."""
        return (
            self.lost == self.duplicated == self.invalid_lines == self.extra == self.orphans == 0
            and self.final == self.expected
        )


@dataclass
class CaseReport:
    """One fault case (second writer, read-only output, full disk): passed or not, and why."""

    case: str
    ok: bool
    how: str
    detail: dict = field(default_factory=dict)


# --- targets -------------------------------------------------------------------------------


def _jsonl_ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    # json.loads raises on an invalid line: the campaign then fails loudly
    return [str(json.loads(line)["id"]) for line in path.read_text(encoding="utf-8").splitlines()]


def _complete_lines(path: Path) -> list[str]:
    """Lines that end with a newline (a torn last line is what resume repairs)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()


def _cli() -> list[str]:
    return [sys.executable, "-m", "asr_distill.cli"]


def label_target(
    manifest: Path, model: str = "tiny.en", batch_size: int = 4, workers: int = 1, threads: int = 1
) -> Target:
    """``asr-distill label`` (``workers > 1``: the multi-process path, parent killed alone)."""

    def command(out: Path) -> list[str]:
        common = ["--model", model, "--batch-size", str(batch_size), "--no-progress"]
        if workers > 1:
            return [
                *_cli(),
                "label",
                str(manifest),
                "--out",
                str(out / "labels.jsonl"),
                *common,
                "--workers",
                str(workers),
            ]
        return [
            *_cli(),
            "label",
            str(manifest),
            "--out",
            str(out / "labels.jsonl"),
            *common,
            "--threads",
            str(threads),
        ]

    def outputs(out: Path) -> list[Path]:
        if workers > 1:
            return sorted(out.glob("labels.shard*.jsonl"))
        return [out / "labels.jsonl", out / "labels.skips.jsonl"]

    def units(out: Path) -> list[str]:
        if workers > 1 and not (out / "labels.jsonl").exists():
            return [i for p in outputs(out) for i in _jsonl_ids(p)]
        return _jsonl_ids(out / "labels.jsonl") + _jsonl_ids(out / "labels.skips.jsonl")

    def lock_file(out: Path) -> Path:
        return out / "labels.jsonl.lock"  # a parallel job's parent holds it too

    name = "label" if workers == 1 else f"label_workers{workers}"
    return Target(name, command, units, lock_file, outputs)


def run_target(manifest: Path, model: str = "tiny.en", batch_size: int = 4, epochs: int = 2) -> Target:
    """``asr-distill run``: label -> filter -> train -> export -> evaluate -> report on the manifest.

    Its units: the label and skip ids, the kept ids, the evaluated ids per system, and the
    finished stages, so a stage redone twice or a line written twice shows.
    """
    import yaml

    config = manifest.with_name("pipeline.yaml")
    test = manifest.with_name("pipeline_test.jsonl")
    test.write_text("".join(manifest.read_text().splitlines(keepends=True)[:4]))
    config.write_text(
        yaml.safe_dump(
            {
                "name": "fault campaign",
                "data": {"train": str(manifest), "test": str(test)},
                "label": {"teacher": model, "second": None, "batch_size": batch_size},
                "filter": {"normaliser": "spoken_form"},
                "train": {
                    "config": str(ROOT / "recipes" / "support" / "student.yaml"),
                    "overrides": {
                        "model.kl_weight": 0.0,
                        "data.augment_copies": 0,
                        "data.val_fraction": 0.25,
                        "data.batch_size": 4,
                        "trainer.max_epochs": epochs,
                    },
                },
                "evaluate": {"models": {}, "resamples": 50},
            },
            sort_keys=False,
        )
    )

    def command(out: Path) -> list[str]:
        return [*_cli(), "run", str(config), "--out", str(out)]

    def outputs(out: Path) -> list[Path]:
        return [out / "label" / "labels.jsonl", out / "label" / "labels.skips.jsonl"]

    def units(out: Path) -> list[str]:
        ids = [i for p in outputs(out) for i in _jsonl_ids(p)]
        ids += ["kept:" + i for i in _jsonl_ids(out / "filter" / "kept.jsonl")]
        for hyp in sorted((out / "eval").glob("*/hyps.jsonl")):
            ids += [f"eval:{hyp.parent.name}:{i}" for i in _jsonl_ids(hyp)]
        ids += ["done:" + m.parent.name for m in sorted(out.glob("*/.done"))]
        return ids

    return Target(
        "run",
        command,
        units,
        lock_file=lambda out: out / ".lock",
        outputs=outputs,
        labels=lambda out: out / "label" / "labels.jsonl",
        timed=True,
        child_locks=lambda out: [out / "train" / ".train.lock"],
    )


def an4_manifest(path: Path, copies: int) -> Path:
    """The 8 committed AN4 clips, ``copies`` times under distinct ids (absolute paths)."""
    lines = []
    for c in range(copies):
        for raw in FIXTURE.read_text().splitlines():
            d = json.loads(raw)
            d["audio_filepath"] = str(FIXTURE.parent / d["audio_filepath"])
            d["id"] = f"c{c}-{Path(d['audio_filepath']).stem}"
            lines.append(json.dumps(d))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(x + "\n" for x in lines))
    return path


# --- running and killing -------------------------------------------------------------------


def _start(argv: list[str], preexec: Callable[[], None] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=preexec
    )


def run_to_end(argv: list[str], preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` from the checkout to its end (or ``RUN_TIMEOUT_S``), capturing its output."""
    proc = _start(argv, preexec)
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> bool:
    """Poll until ``predicate`` holds (True) or the process exits first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(POLL_S)
    raise TimeoutError("the run neither progressed nor ended")


def _safe_count(target: Target, out: Path) -> int:
    return sum(len(_complete_lines(p)) for p in target.outputs(out))


def _lock_held(lock: Path) -> bool:
    if not lock.exists():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def _kill_points(
    rng: random.Random, kills: int, total: int, clean_wall: float | None = None
) -> list[tuple[str, float]]:
    """One kill during start-up, the rest at random progress points (sorted), each plus a delay.

    With ``clean_wall`` the rest are ("time", f): a random share f of the work left (see
    ``TimedKills``), since each resumed run has less to do than the one before.
    """
    points = [("startup", rng.uniform(*STARTUP_KILL_S))]
    if kills > 1:
        if clean_wall is not None:
            points += [("time", rng.uniform(0.2, 0.7)) for _ in range(kills - 1)]
        else:
            fractions = sorted(rng.uniform(0.05, 0.9) for _ in range(kills - 1))
            points += [("progress", max(1, round(f * total))) for f in fractions]
    return points[:kills]


class TimedKills:
    """Turns a share of the remaining work into seconds after a (re)start.

    A resumed run first spends ``RESTART_S`` on imports and model loading; the work a clean
    run did in ``clean_wall`` shrinks by what each killed attempt got done after that.
    """

    RESTART_S = 8.0

    def __init__(self, clean_wall: float):
        self.left = max(clean_wall - self.RESTART_S, 1.0)

    def seconds(self, share: float) -> float:
        """Seconds after a start at which to kill, ``share`` of the way through the work left."""
        work = share * self.left
        self.left = max(self.left - work, 0.15 * (self.left + work))  # resumes redo some work
        return round(self.RESTART_S + work, 2)


def _wait_then_kill_point(
    how: str, value: float, target: Target, out: Path, proc: subprocess.Popen, rng: random.Random
) -> bool:
    """Wait for a kill point; True when the process is still alive to be killed."""
    if how in ("startup", "time"):
        deadline = time.monotonic() + value
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(POLL_S)
        return proc.poll() is None
    alive = _wait_for(lambda: _safe_count(target, out) >= value, proc) and proc.poll() is None
    time.sleep(rng.uniform(0, MAX_EXTRA_DELAY_S))
    return alive and proc.poll() is None


def _clean_run(target: Target, reference: Path) -> float:
    """Run ``target`` uninterrupted into ``reference``; returns its wall time."""
    start = time.monotonic()
    done = run_to_end(target.command(reference))
    if done.returncode != 0:
        raise RuntimeError(f"clean run failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - start


def kill_resume(
    target: Target,
    work: Path,
    kills: int,
    seed: int,
    reference: Path | None = None,
    clean_wall: float | None = None,
) -> KillReport:
    """Kill ``target`` with SIGKILL ``kills`` times at random points, resume, compare to a clean run.

    ``reference``: a folder holding a finished clean run (else one is made in ``work/clean``),
    and ``clean_wall`` its wall time (needed by a ``timed`` target).
    """
    rng = random.Random(seed)
    start = time.monotonic()
    if reference is None:
        reference = work / "clean"
        clean_wall = _clean_run(target, reference)
    if target.timed and clean_wall is None:
        raise ValueError(f"{target.name}: timed kills need the clean run's wall time")
    expected = target.units(reference)
    out = work / "killed"
    report = KillReport(target.name, 0, expected=len(expected))
    clock = TimedKills(clean_wall) if target.timed else None
    for how, value in _kill_points(rng, kills, len(expected), clean_wall if target.timed else None):
        if how == "time":
            value = clock.seconds(value)
        proc = _start(target.command(out))
        if not _wait_then_kill_point(how, value, target, out, proc, rng):
            proc.communicate()
            report.kill_points.append({"how": how, "at": value, "killed": False})
            continue
        os.kill(proc.pid, signal.SIGKILL)  # the process only: workers must die with it
        proc.communicate()
        time.sleep(0.3)  # give orphans (if any) a moment to show on the locks
        locks = [Path(str(p) + ".lock") for p in target.outputs(out)] + target.child_locks(out)
        orphans = sum(_lock_held(lock) for lock in locks)
        torn = _torn_files(target, out)
        report.orphans += orphans
        report.kills += 1
        report.kill_points.append(
            {
                "how": how,
                "at": value,
                "killed": True,
                "lines_after_kill": _safe_count(target, out),
                "torn_files": torn,
                "orphan_workers": orphans,
            }
        )
    done = run_to_end(target.command(out))
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}): {done.stderr[-2000:]}")
    _compare(target, reference, out, expected, report)
    report.wall_s = round(time.monotonic() - start, 1)
    return report


def _compare(target: Target, reference: Path, out: Path, expected: list[str], report: KillReport) -> None:
    report.invalid_lines = _invalid_lines(target, out)
    final = target.units(out)
    report.final = len(final)
    report.duplicated = len(final) - len(set(final))
    report.lost = len(set(expected) - set(final))
    report.extra = len(set(final) - set(expected))
    report.text_mismatches = _text_mismatches(target.labels(reference), target.labels(out))


def _invalid_lines(target: Target, out: Path) -> int:
    bad = 0
    for p in sorted({target.labels(out), *target.outputs(out)}):
        if not p.exists():
            continue
        data = p.read_bytes()
        if data and not data.endswith(b"\n"):
            bad += 1
        for line in data.splitlines():
            try:
                json.loads(line)
            except ValueError:
                bad += 1
    return bad


def _torn_files(target: Target, out: Path) -> list[str]:
    """Output files whose last line has no newline (a write cut short)."""
    return [
        p.name
        for p in target.outputs(out)
        if p.exists() and p.stat().st_size and not p.read_bytes().endswith(b"\n")
    ]


def _text_mismatches(a: Path, b: Path) -> int:
    """Labels whose text differs between two runs (resumed batches differ in composition)."""
    if not (a.exists() and b.exists()):
        return 0
    ta = {d["id"]: d["text"] for d in map(json.loads, a.read_text(encoding="utf-8").splitlines())}
    tb = {d["id"]: d["text"] for d in map(json.loads, b.read_text(encoding="utf-8").splitlines())}
    return sum(ta[k] != tb.get(k) for k in ta)


# --- lock, read-only, full disk ------------------------------------------------------------


def second_writer_refused(target: Target, work: Path) -> CaseReport:
    """Start a run, then a second one on the same output: it must refuse, the first must finish."""
    out = work / "lock"
    started = time.monotonic()
    first = _start(target.command(out))
    _wait_for(lambda: _lock_held(target.lock_file(out)), first)
    second = run_to_end(target.command(out))
    first_out, first_err = first.communicate(timeout=RUN_TIMEOUT_S)
    first_wall = round(time.monotonic() - started, 2)
    units = target.units(out)
    message = second.stderr.strip().splitlines()[-1] if second.stderr.strip() else ""
    ok = (
        second.returncode == 2
        and "another process" in message
        and first.returncode == 0
        and len(units) == len(set(units))
        and _invalid_lines(target, out) == 0
    )
    return CaseReport(
        "second_writer",
        ok,
        "two processes, one --out",
        {
            "second_rc": second.returncode,
            "second_message": message,
            "first_rc": first.returncode,
            "first_wall_s": first_wall,
            "lines": len(units),
            "first_stderr_tail": "" if first.returncode == 0 else first_err[-1500:],
        },
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make ``folder`` read-only for the duration: a read-only bind mount as root, else chmod."""
    if _is_root():
        if _mount("--bind", "-o", "ro", str(folder), str(folder)):
            try:
                yield "read-only bind mount"
            finally:
                subprocess.run(["umount", str(folder)], check=True)
            return
        raise RuntimeError("as root, a read-only bind mount is needed (root ignores permissions)")
    mode = folder.stat().st_mode
    folder.chmod(0o500)
    for p in folder.iterdir():
        p.chmod(0o400)
    try:
        yield "chmod 0500"
    finally:
        folder.chmod(mode)
        for p in folder.iterdir():
            p.chmod(0o644)


def _seed_partial(target: Target, reference: Path, out: Path, keep: int) -> None:
    """A resumable half-done state: the first ``keep`` lines of a clean run (as a kill leaves)."""
    out.mkdir(parents=True, exist_ok=True)
    src = reference / "labels.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)[:keep]
    (out / "labels.jsonl").write_text("".join(lines), encoding="utf-8")


def read_only_output(target: Target, work: Path, reference: Path) -> CaseReport:
    """A half-done output in a folder that became read-only: clear error, nothing changed, resumes."""
    out = work / "readonly"
    expected = target.units(reference)
    _seed_partial(target, reference, out, keep=len(expected) // 2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with read_only(out) as how:
        failed = run_to_end(target.command(out))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name in before}
    message = failed.stderr.strip().splitlines()[-1] if failed.stderr.strip() else ""
    resumed = run_to_end(target.command(out))
    final = target.units(out)
    ok = (
        failed.returncode == 2
        and "writable" in message
        and after == before
        and resumed.returncode == 0
        and sorted(final) == sorted(expected)
        and _invalid_lines(target, out) == 0
    )
    return CaseReport(
        "read_only_output",
        ok,
        how,
        {
            "rc": failed.returncode,
            "message": message,
            "unchanged": after == before,
            "resume_rc": resumed.returncode,
            "final": len(final),
            "expected": len(expected),
        },
    )


@contextlib.contextmanager
def small_disk(
    folder: Path, size_bytes: int
) -> Iterator[tuple[str, Callable[[], object], Callable[[], None] | None]]:
    """A folder on a tiny filesystem; yields (how, grow, preexec) where ``grow`` frees space.

    As root: a tmpfs of ``size`` (ENOSPC), grown with a remount. Otherwise ``preexec`` sets
    RLIMIT_FSIZE in the child (EFBIG), and ``grow`` is a no-op since the next run has no limit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    # tmpfs counts whole 4 KiB pages: one more for each lock file, which names its holder
    size = f"{max(4, size_bytes // 1024) + LOCK_PAGES * 4}k"
    if _is_root() and _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        try:
            yield "tmpfs size=" + size, lambda: _mount("-o", "remount,size=64m", str(folder)), None
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    limit = size_bytes

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    yield f"RLIMIT_FSIZE={limit}", lambda: None, preexec


def full_disk(target: Target, work: Path, reference: Path) -> CaseReport:
    """The disk fills mid-run: clear error, only whole lines kept, resumes to the clean result."""
    out = work / "fulldisk"
    expected = target.units(reference)
    room = int(DISK_FRACTION * (reference / "labels.jsonl").stat().st_size)
    with small_disk(out, room) as (how, grow, preexec):
        failed = run_to_end(target.command(out), preexec)
        message = failed.stderr.strip().splitlines()[-1] if failed.stderr.strip() else ""
        kept = sum(len(_complete_lines(p)) for p in target.outputs(out))
        torn = _torn_files(target, out)
        grow()
        resumed = run_to_end(target.command(out))
        final = target.units(out)
        invalid = _invalid_lines(target, out)
        saved = work / "fulldisk_result"
        shutil.copytree(out, saved, dirs_exist_ok=True)
    text = message.lower()
    ok = (
        failed.returncode == 2
        and (ENOSPC_TEXT in text or EFBIG_TEXT in text)
        and 0 < kept < len(expected)
        and resumed.returncode == 0
        and sorted(final) == sorted(expected)
        and invalid == 0
    )
    return CaseReport(
        "full_disk",
        ok,
        how,
        {
            "rc": failed.returncode,
            "message": message,
            "lines_kept_at_failure": kept,
            "torn_at_failure": torn,
            "resume_rc": resumed.returncode,
            "final": len(final),
            "expected": len(expected),
        },
    )


# --- training -------------------------------------------------------------------------------


RESUMED_AT = "training from global step "


def train_target(manifest: Path, epochs: int = 6) -> Target:
    """``asr-distill train`` on the manifest's transcripts (tiny.en student, cached encoder)."""
    import yaml

    from asr_distill.student.config import place_student_config

    base = yaml.safe_load((ROOT / "recipes" / "support" / "student.yaml").read_text())
    # no early stopping: it reads validation WER, which a resumed run need not reproduce, so
    # the final step would not be comparable with a clean run's
    base["trainer"]["callbacks"] = [
        cb
        for cb in base["trainer"].get("callbacks") or []
        if not str(cb.get("class_path", "")).endswith("EarlyStopping")
    ]
    overrides = {
        "model.init": "tiny.en",
        "model.kl_weight": 0.0,
        "model.ce_weight": 1.0,
        "data.augment_copies": 0,
        "data.val_fraction": 0.25,
        "data.batch_size": 4,
        "trainer.max_epochs": epochs,
        "trainer.max_time": None,
        "trainer.log_every_n_steps": 1,
    }

    def command(out: Path) -> list[str]:
        cfg = out.with_name(out.name + ".train.yaml")  # beside the run folder: it is the user's file
        if not cfg.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(
                yaml.safe_dump(
                    place_student_config(base, out, manifest, "tiny.en", overrides), sort_keys=False
                )
            )
        return [*_cli(), "train", "--config", str(cfg)]

    def units(out: Path) -> list[str]:
        step = checkpoint_step(out)
        return [] if step is None else [f"step{i}" for i in range(1, step + 1)]

    return Target(
        "train", command, units, lock_file=lambda out: out / ".train.lock", outputs=lambda out: [], timed=True
    )


def checkpoint_step(out: Path) -> int | None:
    """The global step saved in ``out/checkpoints/last.ckpt`` (None without one).

    Raises:
        CheckpointError: a torn or unreadable checkpoint (what a kill mid-save would leave).
    """
    last = out / "checkpoints" / "last.ckpt"
    if not last.exists():
        return None
    return int(load_checkpoint(last)["global_step"])


def _resumed_at(stderr: str) -> int | None:
    for line in stderr.splitlines():
        if RESUMED_AT in line:
            return int(line.split(RESUMED_AT, 1)[1].split()[0])
    return None


@dataclass
class TrainKillReport:
    """Kills during training, and whether each resume started where the last checkpoint left off.

    A resume must start at the step of the checkpoint the kill left (not 0, not a
    half-written file) and the run must end at a clean run's final step.
    """

    kills: int = 0
    kill_points: list[dict] = field(default_factory=list)
    expected_steps: int = 0  # the clean run's final step
    final_steps: int = 0
    resumes_checked: int = 0  # restarts that logged the step they started at
    resumes_wrong: int = 0  # ... and started elsewhere than the saved checkpoint's step
    unreadable_checkpoints: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Every resume started where it should, and training ended where a clean run ends."""
        return (
            self.final_steps == self.expected_steps > 0
            and self.resumes_wrong == 0
            and self.unreadable_checkpoints == 0
            and self.resumes_checked > 0
        )


def kill_resume_training(
    target: Target, work: Path, kills: int, seed: int, reference: Path, clean_wall: float
) -> TrainKillReport:
    """Kill training ``kills`` times at random moments; check each restart's step, then finish it."""
    rng = random.Random(seed)
    start = time.monotonic()
    report = TrainKillReport(expected_steps=checkpoint_step(reference) or 0)
    out = work / "killed"
    saved: int | None = None  # the step last.ckpt holds when the next process starts
    clock = TimedKills(clean_wall)
    for how, value in [*_kill_points(rng, kills, 0, clean_wall), ("end", 0.0)]:
        if how == "time":
            value = clock.seconds(value)
        proc = _start(target.command(out))
        if how == "end":
            _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"resume failed ({proc.returncode}): {err[-2000:]}")
            point = {"how": "end"}
        elif not _wait_then_kill_point(how, value, target, out, proc, rng):
            _, err = proc.communicate()
            point = {"how": how, "at": value, "killed": False}
        else:
            os.kill(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            report.kills += 1
            point = {"how": how, "at": value, "killed": True}
        resumed = _resumed_at(err)
        if resumed is not None:
            report.resumes_checked += 1
            report.resumes_wrong += resumed != (saved or 0)
        try:
            saved = checkpoint_step(out)
        except Exception as e:  # a torn checkpoint: the resume would fail on it
            report.unreadable_checkpoints += 1
            point["checkpoint_error"] = repr(e)
        report.kill_points.append(point | {"started_at_step": resumed, "checkpoint_step_after": saved})
    report.final_steps = checkpoint_step(out) or 0
    report.wall_s = round(time.monotonic() - start, 1)
    return report


# --- the campaign --------------------------------------------------------------------------


TARGETS: dict[str, Callable[[argparse.Namespace, Path], Target]] = {
    "label": lambda a, m: label_target(m, a.model, a.batch_size),
    "label_workers": lambda a, m: label_target(m, a.model, a.batch_size, workers=2),
    "run": lambda a, m: run_target(m, a.model, a.batch_size),
    "train": lambda a, m: train_target(m),
}


def campaign(target: Target, work: Path, kills: int, seed: int, faults: bool = True) -> dict:
    """Every fault against one target; returns a JSON-ready summary."""
    reference = work / "clean"
    lock = second_writer_refused(target, work)  # its first process is an uninterrupted run
    if not lock.detail["first_rc"] == 0:
        raise RuntimeError(f"{target.name}: the clean run failed: {lock.detail['first_stderr_tail']}")
    shutil.copytree(work / "lock", reference)
    clean_wall = lock.detail["first_wall_s"]
    if target.name == "train":
        killed = kill_resume_training(target, work, kills, seed, reference, clean_wall)
    else:
        killed = kill_resume(target, work, kills, seed, reference=reference, clean_wall=clean_wall)
    cases = [lock]
    if faults:
        cases += [read_only_output(target, work, reference), full_disk(target, work, reference)]
    return {
        "target": target.name,
        "kill": asdict(killed) | {"ok": killed.ok},
        "cases": [asdict(c) for c in cases],
        "ok": killed.ok and all(c.ok for c in cases),
    }


def main(argv: list[str] | None = None, prog: str = "python -m asr_distill.testing.fault_campaign") -> int:
    """Run the campaign on the chosen targets; 0 when every target passed.

    ``prog``: how the summary's ``command`` names this program (the script passes its path).
    """
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--copies", type=int, default=6, help="AN4 fixture copies in the manifest (8 clips each)")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the summary here too")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fault_campaign."))
    results = []
    try:
        manifest = an4_manifest(work / "manifest.jsonl", a.copies)
        for name in a.targets:
            target = TARGETS[name](a, manifest)
            results.append(campaign(target, work / name, a.kills, a.seed, faults=(name == "label")))
            print(json.dumps(results[-1], indent=1, ensure_ascii=False), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {"command": " ".join([prog, *argv]), "ok": all(r["ok"] for r in results), "results": results}
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
