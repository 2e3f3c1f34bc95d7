"""Labeling as a Ray Data job: the manifest as a dataset, the teacher in a pool of actors.

``label_ray`` runs the labeler ``label_to_file`` runs (``label.label_batches``: the same audio
loading, batching, seeding and decoding), as a ``map_batches`` stage whose actors each hold
one teacher (one GPU each on a GPU cluster, a share of the cores on a CPU one). Only the
driver writes: it holds the output's lock, appends each finished batch with an fsync, and
keeps each id once, so a killed actor loses nothing already written. Ray restarts the actor
and retries the batch it held; a killed driver resumes like ``asr-distill label``, skipping
ids already written.

The driver reads the manifest (ids are checked for duplicates across all of it) and records
manifest-level skips itself; the actors read the audio, so on a cluster every node needs
the audio at the paths the manifest names, and the same asr_distill installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .interop.inputs import read_input
from .label import BUCKET_BATCHES, LabelFiles, LabelRun, LabelStats, check_output_files, open_label_files
from .parallel import WORKER_ERRORS, available_cores, check_split_job
from .records import Skip, Utterance
from .teacher.options import AUTO_BATCH, DEFAULT_BATCH_SIZE, MAX_AUTO_BATCH

log = logging.getLogger(__name__)

EXTRA = "ray"  # pyproject's optional dependencies: pip install 'asr_distill[ray]'


def _import_ray():
    """Ray and Ray Data, or an ImportError that names the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(f"--engine ray needs Ray Data: pip install 'asr_distill[{EXTRA}]' ({e})") from e
    return ray


class LabelActor:
    """One teacher in one Ray actor; called with a batch of manifest rows, returns their records.

    The model loads once per actor (again after a restart). Rows come as Ray Data's numpy
    batch: ``record`` (an ``Utterance`` as JSON) and ``done`` (ids of its segments already
    written). Each output row is one record as a JSON line, with its ``kind`` and ``id``.
    """

    def __init__(self, run: LabelRun, device: str, threads: int):
        import torch

        from .teacher import load_teacher
        from .teacher.backends import make_backend

        torch.set_num_threads(threads)
        teacher = load_teacher(run.teacher, device=device)
        self._engine = make_backend(teacher, run.backend, run.precision, device)
        self._run = replace(run, teacher=teacher, device=device, progress=False)

    def __call__(self, rows: dict) -> dict:
        """Label the rows' utterances with ``label.label_batches``; labels and skips as JSON lines."""
        import numpy as np

        from .label import label_batches

        records = [Utterance.from_dict(json.loads(r)) for r in rows["record"]]
        done = {str(i) for ids in rows["done"] for i in ids}
        out: dict[str, list[str]] = {"kind": [], "id": [], "line": []}
        for labels, skips in label_batches(records, self._run, done_ids=done, engine=self._engine):
            for kind, record in [*(("label", x) for x in labels), *(("skip", x) for x in skips)]:
                out["kind"].append(kind)
                out["id"].append(record.id)
                out["line"].append(json.dumps(record.to_dict(), ensure_ascii=False))
        return {k: np.array(v, dtype=object) for k, v in out.items()}


def label_ray(
    manifest: str | Path,
    out: str | Path,
    run: LabelRun | None = None,
    *,
    workers: int = 1,
    address: str | None = None,
    force: bool = False,
    rows_per_call: int | None = None,
) -> LabelStats:
    """Label ``manifest`` into ``out`` (and its skips file) with ``workers`` Ray actors.

    The output is the one ``label.label_to_file`` writes, resumed the same way: a rerun (with
    either engine) skips ids already written. Ray is used as found when this process already
    called ``ray.init``; otherwise it joins ``address`` (``auto``, ``ray://head:10001``), or
    starts a local Ray on this machine's cores, and shuts it down at the end.

    Args:
        manifest: As for ``label.label_batches`` (read here, by the driver).
        out: The label file; skips go to ``label.skips_path(out)``.
        run: As for ``label.label_batches``, with the teacher's name or path (each actor
            loads its own copy) and no ``shard``. ``device``: ``cpu`` keeps actors off GPUs;
            otherwise each actor takes one GPU when the cluster has them.
        workers: Actors, each with one teacher (one per GPU on a GPU cluster).
        address: The Ray cluster to join (``ray.init(address=...)``); None: a local Ray.
        force: Replace an existing ``out`` (or skips file) this toolkit did not write.
        rows_per_call: Manifest rows per actor call (default ``run.batch_size *
            label.BUCKET_BATCHES``, the rows ``label_to_file`` sorts by length together).

    Raises:
        ValueError: ``workers < 1``, a loaded teacher, or a ``run.shard``.
        ImportError: Ray is not installed (the ``ray`` extra).
        OutputLockedError, UnsafeOutputError, OutputNotWritableError: as ``label_to_file``.
    """
    run = run or LabelRun()
    check_split_job(run, workers, "label_ray")  # before anything is opened or started
    ray = _import_ray()  # before any output is touched
    start = time.perf_counter()
    check_output_files(out, [manifest], force=force)
    with open_label_files(out, [manifest], force=force) as files:
        rows, skips = _pending(read_input(manifest), files)
        files.skips.write(skips)
        labeled, audio_s, more_skips = 0, 0.0, 0
        if rows:
            with _ray_session(ray, address):
                labeled, audio_s, more_skips = _run_actors(ray, rows, files, run, workers, rows_per_call)
    skipped = len(skips) + more_skips
    return LabelStats(labeled, skipped, files.already_done, audio_s, time.perf_counter() - start)


def _pending(records, files: LabelFiles) -> tuple[list[dict], list[Skip]]:
    """The dataset rows still to label, and the manifest-level skips not yet recorded.

    A long recording's segments are labeled one by one, so a row carries the ids of its
    segments already written (``{id}@{start}``) and only the rest are decoded.
    """
    segments_done: dict[str, list[str]] = defaultdict(list)
    for i in files.done:
        if "@" in i:
            segments_done[i.rsplit("@", 1)[0]].append(i)
    rows, skips = [], []
    for r in records:
        if isinstance(r, Skip):
            if (r.id, r.reason) not in files.done_skips:
                skips.append(r)
        elif r.id not in files.done:
            rows.append({"record": json.dumps(r.to_dict()), "done": segments_done.get(r.id, [])})
    return rows, skips


def _run_actors(
    ray, rows: list[dict], files: LabelFiles, run: LabelRun, workers: int, per_call: int | None
) -> tuple[int, float, int]:
    """Label ``rows`` in Ray actors, writing each finished batch; returns labels, audio s, skips.

    Ray Data's actor pools restart a dead actor and retry the batch it held (their defaults,
    ``max_restarts=-1`` and ``max_task_retries=-1``); the batch's records then arrive once.
    ``per_call`` None: ``BUCKET_BATCHES`` batches, where an ``auto`` batch is the largest a GPU
    actor may choose and the CPU size for CPU actors.
    """
    gpus, cpus = _actor_resources(ray, workers, use_gpus=run.device != "cpu")
    if per_call is None:
        batch = run.batch_size
        if batch == AUTO_BATCH:
            batch = MAX_AUTO_BATCH if gpus else DEFAULT_BATCH_SIZE
        per_call = int(batch) * BUCKET_BATCHES
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = run.progress
    ctx.print_on_execution_start = False
    log.info(
        "labeling %d rows with %d Ray actors (%s each)",
        len(rows),
        workers,
        "1 GPU" if gpus else f"{cpus} CPUs",
    )
    labeled = ray.data.from_items(rows).map_batches(
        LabelActor,
        fn_constructor_kwargs={
            "run": replace(run, teacher=str(run.teacher)),
            "device": "cuda" if gpus else "cpu",
            "threads": cpus,
        },
        batch_size=per_call,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus,
        num_gpus=gpus,
    )
    try:
        return _write_once(labeled.iter_batches(batch_size=None, batch_format="numpy"), files)
    except ray.exceptions.RayError as e:
        raise (_worker_error(ray, e) or e) from e


def _worker_error(ray, e: Exception) -> Exception | None:
    """The toolkit's own error behind a Ray failure (one of ``parallel.WORKER_ERRORS``), or None.

    An error in a batch comes back as its cause; one in an actor's ``__init__`` (a teacher
    not found) only as text, so it is rebuilt from the last ``TypeName: message`` line.
    """
    for err in (e, getattr(e, "cause", None), e.__cause__):
        if isinstance(err, WORKER_ERRORS) and not isinstance(err, ray.exceptions.RayError):
            return err
    if isinstance(e, ray.exceptions.RayActorError) and e.actor_init_failed:
        text = str(e)
        for kind in WORKER_ERRORS:
            if f"{kind.__name__}: " in text:
                return kind(text.rsplit(f"{kind.__name__}: ", 1)[1].strip())
    return None


def _actor_resources(ray, workers: int, use_gpus: bool) -> tuple[int, int]:
    """GPUs (0 or 1) and CPUs for each actor, such that all ``workers`` fit on the cluster's nodes.

    One GPU each when the cluster has GPUs; else the most CPUs each that still places every
    actor (an actor runs on one node, so the cluster's total alone would not do).

    Raises:
        ValueError: more actors than GPUs (or CPUs) to give them.
    """
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = sum(int(r.get("GPU", 0)) for r in nodes) if use_gpus else 0
    if gpus:
        if workers > gpus:
            raise ValueError(
                f"the Ray cluster has {gpus} GPUs: give at most {gpus} workers (one teacher per GPU)"
            )
        return 1, 1
    cpus = [int(r.get("CPU", 0)) for r in nodes]
    for each in range(max(cpus, default=0), 0, -1):
        if sum(c // each for c in cpus) >= workers:
            return 0, each
    raise ValueError(f"the Ray cluster has {sum(cpus)} CPUs: give at most {sum(cpus)} workers")


def _write_once(batches: Iterator[dict], files: LabelFiles) -> tuple[int, float, int]:
    """Append each batch's new records (a retried batch's repeats are dropped by id)."""
    seen_labels = set(files.labels.done_ids)
    seen_skips = set(files.done_skips)
    labeled, audio_s, skipped, repeats = 0, 0.0, 0, 0
    for batch in batches:
        labels, skips = [], []
        for kind, rid, line in zip(batch["kind"], batch["id"], batch["line"], strict=True):
            record = json.loads(line)
            key = rid if kind == "label" else (rid, record.get("reason"))
            seen = seen_labels if kind == "label" else seen_skips
            if key in seen:
                repeats += 1
                continue
            seen.add(key)
            (labels if kind == "label" else skips).append(record)
        files.labels.write(labels)
        files.skips.write(skips)
        labeled += len(labels)
        skipped += len(skips)
        audio_s += sum(float(d["duration"]) for d in labels)
    if repeats:
        log.info("dropped %d records already written (a retried batch)", repeats)
    return labeled, audio_s, skipped


@contextlib.contextmanager
def _ray_session(ray, address: str | None) -> Iterator[None]:
    """Ray as this process already started it, or joined (``address``) / started here and shut after."""
    if ray.is_initialized():
        yield
        return
    joining = address is not None or "RAY_ADDRESS" in os.environ  # Ray's own way to name a cluster
    local = {} if joining else {"num_cpus": available_cores()}
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=log.isEnabledFor(logging.INFO),
        **local,
    )
    try:
        yield
    finally:
        ray.shutdown()


__all__ = ["LabelActor", "label_ray"]
