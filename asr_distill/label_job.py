"""The label stage as ``asr-distill label`` and the pipeline both run it, on either engine.

``local`` is this machine's processes (one, ``--workers N`` of them, or a torchrun / SLURM
launch: :mod:`asr_distill.parallel`); ``ray`` is a Ray Data job with the teacher in actors
(:mod:`asr_distill.ray_engine`). Both write the same resumable label file.
"""

from __future__ import annotations

from pathlib import Path

from . import parallel
from .label import LabelRun, LabelStats
from .parallel import ParallelStats, launched_by_torchrun
from .teacher.options import ENGINES


def label_job(
    manifest: str | Path,
    out: str | Path,
    run: LabelRun | None = None,
    *,
    workers: int = 1,
    threads: int = 0,
    force: bool = False,
    engine: str = "local",
    address: str | None = None,
) -> LabelStats | ParallelStats:
    """Label ``manifest`` into ``out`` with ``run`` on ``engine``.

    Args:
        manifest: what to label (a manifest, a saved Hugging Face dataset, a lhotse CutSet).
        out: the label file; a rerun resumes it.
        run: the teacher and how it decodes (default: :class:`LabelRun`'s).
        workers: processes (local) or teacher actors (ray).
        threads: torch threads per local process (0: as they are).
        force: replace an output this toolkit did not write.
        engine: ``local`` or ``ray`` (``teacher.options.ENGINES``).
        address: with ``ray``, the cluster for ``ray.init(address=...)`` (None: a local Ray).

    Raises:
        ValueError: an unknown ``engine``; a shard or a torchrun launch with ``ray``; ``workers``
            and ``run.shard`` together.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local":
        return parallel.label_local(manifest, out, run, workers=workers, threads=threads, force=force)
    if (run is not None and run.shard) or launched_by_torchrun():
        raise ValueError("the Ray engine splits the job itself; drop --shard and torchrun")
    from .ray_engine import label_ray

    return label_ray(manifest, out, run, workers=workers, address=address, force=force)


__all__ = ["label_job"]
