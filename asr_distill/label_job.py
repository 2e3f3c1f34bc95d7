"""The label stage as ``asr-distill label`` and the pipeline both run it, on either engine.

``local`` is this machine's processes (one, ``--workers N`` of them, or a torchrun / SLURM
launch: :mod:`asr_distill.parallel`); ``ray`` is a Ray Data job with the teacher in actors
(:mod:`asr_distill.ray_engine`). Both write the same resumable label file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import parallel
from .label import LabelRun, LabelStats
from .parallel import ParallelStats, launched_by_torchrun
from .teacher.options import ENGINES


@dataclass(frozen=True)
class Placement:
    """Where a labeling job runs and how wide: the same for the CLI and the pipeline config.

    Attributes:
        engine: ``local`` or ``ray`` (``teacher.options.ENGINES``).
        workers: processes (local) or teacher actors (ray).
        threads: torch threads per local process (0: as they are).
        address: with ``ray``, the cluster for ``ray.init(address=...)`` (None: a local Ray).

    Raises:
        ValueError: an unknown ``engine``.
    """

    engine: str = "local"
    workers: int = 1
    threads: int = 0
    address: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


def label_job(
    manifest: str | Path,
    out: str | Path,
    run: LabelRun | None = None,
    where: Placement | None = None,
    *,
    pack_s: float | None = None,
    force: bool = False,
) -> LabelStats | ParallelStats:
    """Label ``manifest`` (a manifest, saved HF dataset or CutSet) into ``out`` with ``run``, ``where`` says.

    Locally, more than one worker (or a torchrun launch) labels with that many processes and
    merges (:func:`parallel.label_parallel`); one labels ``run.shard`` (or everything) in this
    process (:func:`label.label_to_file`). A rerun resumes ``out``; ``force`` replaces an output
    this toolkit did not write. ``pack_s`` labels each speaker's consecutive short utterances
    together in windows of up to that many seconds (:mod:`asr_distill.pack_job`), in this process.

    Raises:
        ValueError: several local workers and ``run.shard`` together (both split a job); a shard
            or a torchrun launch with the Ray engine; ``pack_s`` with a shard, several workers or Ray.
    """
    run, where = run or LabelRun(), where or Placement()
    if pack_s is not None:
        if where.engine != "local" or where.workers > 1 or launched_by_torchrun():
            raise ValueError("packed labeling runs in one process; drop --workers, torchrun and --engine ray")
        from .pack_job import label_packed_to_file

        with parallel.torch_threads(where.threads):
            return label_packed_to_file(manifest, out, run, max_s=pack_s, force=force)
    if where.engine == "ray":
        if run.shard or launched_by_torchrun():
            raise ValueError("the Ray engine splits the job itself; drop --shard and torchrun")
        from .ray_engine import label_ray

        return label_ray(manifest, out, run, workers=where.workers, address=where.address, force=force)
    if where.workers > 1 or launched_by_torchrun():
        if run.shard:
            raise ValueError("--workers and --shard both split a job; use one")
        threads = where.threads or None
        return parallel.label_parallel(
            manifest, out, run, workers=where.workers, threads=threads, force=force
        )
    with parallel.torch_threads(where.threads):
        return parallel.label_to_file(manifest, out, run, force=force)


__all__ = ["Placement", "label_job"]
