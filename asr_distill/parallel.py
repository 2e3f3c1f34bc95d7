"""Multi-process labeling: N workers label one manifest, each its own shard, merged at the end.

Each worker is one process (one per GPU on a cluster, a share of the cores on a CPU box)
that runs ``label_to_file`` on shard ``(rank, n)`` into its own part file, so workers never
share a file, a lock or a model; rank 0 merges the parts once every worker has finished.
Because every part file is resumable on its own, a job killed anywhere resumes with the
same command and the same worker count: each worker skips the ids its part already holds.

Two ways to start the workers, with one code path per rank:

- ``label_parallel(manifest, out, run, workers=N)`` spawns N processes here (``torch.multiprocessing``)
  and joins them with a gloo process group (it only carries each shard's statistics).
- Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the same call runs as that
  one rank, on ``cuda:LOCAL_RANK`` when GPUs exist: ``torchrun --nproc-per-node 8 -m
  asr_distill.cli label M --out O --workers 8``. Shards are line index mod N, so they are
  the same whichever launcher started them.

Audio decoding overlaps compute inside each worker through ``label_batches``'s loader
threads (libsndfile and soxr release the GIL; ``benchmarks/reliability.py`` measures it).
The job holds ``out``'s lock from start to merge (``job_lock``), so a second job on the same
output is refused before it spawns anything. Spawned workers die with their parent
(``PR_SET_PDEATHSIG``): a parent killed with ``kill -9`` leaves no orphan holding a part
file's lock, so the resume can start at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from .jsonl import OutputLockedError, OutputNotWritableError, exclusive_lock
from .label import LabelRun, LabelStats, check_output_files, find_shards, label_to_file, merge_shards
from .proc import tie_to_parent
from .teacher.errors import TeacherNotFoundError

log = logging.getLogger(__name__)

# Errors a user can act on: a worker sends them back and the parent raises them as they are.
WORKER_ERRORS = (
    OutputLockedError,
    OutputNotWritableError,
    TeacherNotFoundError,
    FileNotFoundError,
    ValueError,
)
GROUP_TIMEOUT = timedelta(days=7)  # shards finish at different times; the group only waits


@dataclass(frozen=True)
class ParallelStats:
    """What a multi-process labeling run did: one ``LabelStats`` per shard, plus the merge.

    ``labeled``, ``skipped``, ``already_done`` and ``audio_s`` are the shards' sums;
    ``rtfx`` is the job's audio seconds per wall second of the whole job (spawn to merge).
    """

    workers: int
    shards: tuple[LabelStats, ...]
    merged: int
    wall_s: float
    threads_per_worker: int = 0
    labeled: int = field(init=False)
    skipped: int = field(init=False)
    already_done: int = field(init=False)
    audio_s: float = field(init=False)

    def __post_init__(self) -> None:
        for name in ("labeled", "skipped", "already_done", "audio_s"):
            object.__setattr__(self, name, sum(getattr(s, name) for s in self.shards))

    @property
    def rtfx(self) -> float:
        """Audio seconds per wall second of the whole job."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs, picklable (``run.teacher`` a name, not a loaded model)."""

    manifest: str
    out: str
    run: LabelRun
    threads: int
    log_level: int = logging.WARNING
    force: bool = False


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes: the cores split evenly, at least 1."""
    return max(1, (cores or available_cores()) // workers)


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a ``torchrun`` job (it sets these variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``n`` torch threads inside the block (0: as they are), restored after it."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def label_parallel(
    manifest: str | Path,
    out: str | Path,
    run: LabelRun | None = None,
    *,
    workers: int,
    threads: int | None = None,
    force: bool = False,
) -> ParallelStats:
    """Label ``manifest`` into ``out`` with ``workers`` processes, one shard each, then merge.

    Part files ``shard_path(out, (i, workers))`` are kept after the merge: they are the
    resume state, so a rerun of the same command does nothing but merge again.

    Args:
        manifest: NeMo JSON Lines manifest.
        out: Final merged label file; skips go to ``skips_path(out)``.
        run: As for ``label.label_batches``, with the teacher's name or path (each worker
            loads its own copy, on its rank's GPU: ``run.device`` is not used) and no
            ``shard`` (the workers are the shards). Its ``seed`` is per batch
            (``label.batch_seed``): labels do not depend on N.
        workers: Processes (one per GPU on a cluster). Under torchrun, ``WORLD_SIZE`` wins.
        threads: Torch threads per worker; default ``available_cores() // workers``.
        force: Replace an existing ``out`` (or part file) this toolkit did not write.

    Raises:
        ValueError: ``workers < 1``, a loaded teacher, a ``run.shard``, or part files beside
            ``out`` from another worker count.
        OutputLockedError: another job writes ``out``.
        UnsafeOutputError: ``out`` is the manifest, a link, or a file we did not write.
        OutputNotWritableError: ``out``'s folder is read-only or full (a worker's error
            comes back as it is, like ``TeacherNotFoundError``).
    """
    run = run or LabelRun()
    world = _checked_world(manifest, out, workers, run, force)
    job = _Job(
        manifest=str(manifest),
        out=str(out),
        run=replace(run, teacher=str(run.teacher)),
        threads=threads or threads_per_worker(world),
        log_level=logging.getLogger("asr_distill").getEffectiveLevel(),
        force=force,
    )
    return _run_job(job, world)


def _checked_world(manifest: str | Path, out: str | Path, workers: int, run: LabelRun, force: bool) -> int:
    """The number of workers to run (torchrun's ``WORLD_SIZE`` wins), once the job is safe to start.

    Everything ``label_parallel`` refuses is refused here, before a process is spawned.
    """
    check_split_job(run, workers)
    world = int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else workers
    if world != workers:
        log.warning("torchrun started %d ranks; labeling with %d workers, not %d", world, world, workers)
    check_output_files(out, [manifest], force=force)
    _check_no_other_run(out, world)
    return world


def check_split_job(run: LabelRun, workers: int, who: str = "label_parallel") -> None:
    """Refuse a job split among ``workers`` processes (or Ray actors) that could not run.

    Each worker loads its own teacher, so ``run.teacher`` must be a name or path; the
    workers are the split, so ``run.shard`` must be unset.

    Raises:
        ValueError: naming what to change.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not isinstance(run.teacher, (str, os.PathLike)):
        raise ValueError(f"{who} needs the teacher's name or path: each worker loads its own copy")
    if run.shard:
        raise ValueError(f"{who} splits the job among its workers; leave run.shard unset")


def _run_job(job: _Job, world: int) -> ParallelStats:
    """This rank under torchrun, else ``world`` spawned ranks; ``out``'s lock held from start to merge."""
    start = time.perf_counter()
    if launched_by_torchrun():
        rank = int(os.environ["RANK"])
        with job_lock(job.out) if rank == 0 else contextlib.nullcontext():
            shards, merged = _run_rank(rank, world, job, "env://")
    else:
        with job_lock(job.out):
            shards, merged = _spawn(job, world)
    return ParallelStats(world, tuple(shards), merged, time.perf_counter() - start, job.threads)


def job_lock(out: str | Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``out``'s lock for the whole job, so a second job on ``out`` is refused at once.

    The lock file is the one a one-process run of ``out`` takes (``ResumableJsonlWriter``),
    so a parallel job and a plain ``asr-distill label`` also refuse each other. The kernel
    drops the lock when the holder dies, so a killed job never blocks its resume.
    """
    out = Path(out)
    return exclusive_lock(
        out.with_name(out.name + ".lock"), out, "wait for it, or give this job another --out"
    )


def _check_no_other_run(out: str | Path, workers: int) -> None:
    _, count = find_shards(out)
    if count is not None and count != workers:
        raise ValueError(
            f"{out} already has part files of a {count}-worker run; resume it with --workers {count} "
            f"(shards are line index mod N, so another N would relabel), or merge them and use a new --out"
        )


def _spawn(job: _Job, workers: int) -> tuple[list[LabelStats], int]:
    """Run the ranks as child processes; a worker's error is raised here as its own type."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    init = f"tcp://127.0.0.1:{_free_port()}"
    log.info("labeling %s with %d workers, %d torch threads each", job.manifest, workers, job.threads)
    exited: Exception | None = None
    try:
        mp.spawn(_spawned_rank, args=(workers, job, init, results, os.getpid()), nprocs=workers, join=True)
    except mp.ProcessExitedException as e:  # a worker sent its error first, or was killed
        exited = e
    messages = []
    while not results.empty():
        messages.append(results.get())
    for kind, payload in messages:
        if kind == "error":
            raise payload
    done = [payload for kind, payload in messages if kind == "done"]
    if not done:
        raise RuntimeError(
            f"labeling workers for {job.out} ended without a result ({exited}); "
            "finished batches are kept: rerun the same command to resume"
        ) from exited
    return done[0]


def _spawned_rank(rank: int, workers: int, job: _Job, init: str, results, parent: int) -> None:
    tie_to_parent(parent)
    if not logging.getLogger().handlers:  # a spawned child starts bare: mirror the parent's level
        logging.basicConfig(level=job.log_level, format=f"%(levelname)s rank{rank} %(name)s: %(message)s")
    try:
        shards, merged = _run_rank(rank, workers, job, init)
    except WORKER_ERRORS as e:
        results.put(("error", e))
        raise SystemExit(2) from None
    if rank == 0:
        results.put(("done", (shards, merged)))


def _run_rank(rank: int, world: int, job: _Job, init: str) -> tuple[list[LabelStats], int]:
    """Label shard ``rank`` of ``world``; every rank gets all shards' stats, rank 0 merges."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(job.threads)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world, timeout=GROUP_TIMEOUT)
    try:
        run = replace(
            job.run,
            teacher=_load_for_rank(str(job.run.teacher)),
            shard=(rank, world),
            progress=job.run.progress and rank == 0,
            device=None,
        )
        stats = label_to_file(job.manifest, job.out, run, force=job.force)
        log.info(
            "shard %d/%d: labeled %d, skipped %d, already done %d, RTFx %.1f",
            rank,
            world,
            stats.labeled,
            stats.skipped,
            stats.already_done,
            stats.rtfx,
        )
        gathered: list[LabelStats | None] = [None] * world
        dist.all_gather_object(gathered, stats)  # also waits for every shard to finish
        merged = merge_shards(job.out, force=job.force) if rank == 0 else 0
        return list(gathered), merged
    finally:
        dist.destroy_process_group()


def _load_for_rank(name: str):
    """The teacher on this rank's GPU (``LOCAL_RANK``), or on the CPU when there is none."""
    import torch

    from .teacher import load_teacher

    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return load_teacher(name, device=device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = [
    "ParallelStats",
    "available_cores",
    "check_split_job",
    "job_lock",
    "label_parallel",
    "launched_by_torchrun",
    "threads_per_worker",
]
