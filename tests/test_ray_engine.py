"""Labeling as a Ray Data job (``asr_distill.ray_engine``) on a local 2-CPU Ray.

The bar: the same ids and texts as ``asr-distill label`` on the same input, and a worker
killed mid-run costs nothing: 0 ids lost, 0 written twice, and a rerun relabels nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import FIXTURE, fixture_lines, write_manifest

from asr_distill.label import LabelRun, open_label_files, skips_path
from asr_distill.records import Skip, Utterance
from asr_distill.testing.cli import run_cli, snapshot
from asr_distill.testing.labels import make_label

KILL_WAIT_S = 600  # the labeling a kill has to land in runs for minutes at most on 2 shared cores


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _texts(path: Path) -> dict[str, str]:
    return {d["id"]: d["text"] for d in _lines(path)}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs, its temp dir under a short /tmp path; shut down after the module."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'asr_distill[ray]')")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # its socket paths must stay short
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    yield temp_dir
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_ray_labels_equal_local_labels(local_ray, tmp_path):
    """``--engine ray`` writes the same ids, texts and decoding settings as the local engine.

    The precision is fixed: ``auto`` is timed per torch thread count, and an actor runs fewer
    threads than this process, so each may rightly pick another dtype.
    """
    common = ["--model", "tiny.en", "--batch-size", "8", "--precision", "fp32", "--no-progress"]
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert run_cli("label", FIXTURE, "--out", local, *common)[0] == 0
    rc, stdout, _ = run_cli("label", FIXTURE, "--out", ray_out, *common, "--engine", "ray", "--workers", "2")
    assert rc == 0 and "labeled 8 (already done 0), skipped 0" in stdout
    assert _texts(ray_out) == _texts(local) and len(_texts(local)) == 8
    (a,), (b,) = ({json.dumps(d["provenance"], sort_keys=True) for d in _lines(p)} for p in (local, ray_out))
    assert a == b
    assert skips_path(ray_out).read_text() == ""


@pytest.mark.slow
def test_actor_error_is_the_toolkit_error(local_ray, tmp_path):
    """A teacher an actor cannot load fails the job with ``TeacherNotFoundError``, not a Ray trace."""
    from asr_distill.label import check_output_files
    from asr_distill.ray_engine import label_ray
    from asr_distill.teacher.errors import TeacherNotFoundError

    out = tmp_path / "labels.jsonl"
    with pytest.raises(TeacherNotFoundError, match="no-such-model"):
        label_ray(FIXTURE, out, LabelRun("no-such-model"), workers=1)
    assert not _lines(out) and not _lines(skips_path(out))
    check_output_files(out, [FIXTURE])  # a rerun with a good model may write here


def _actor_pids(temp_dir: str) -> list[int]:
    """Our Ray's labeling actors: processes titled ``ray::...LabelActor...`` under its raylet."""
    import psutil

    pids = []
    for p in psutil.process_iter(["cmdline"]):
        title = (p.info["cmdline"] or [""])[0]
        if title.startswith("ray::") and "LabelActor" in title:
            try:
                parent = " ".join(p.parent().cmdline())
            except (psutil.Error, AttributeError):
                continue
            if temp_dir in parent:
                pids.append(p.pid)
    return pids


def _kill_an_actor_mid_run(out: Path, temp_dir: str, total: int, seen: dict) -> None:
    """Once the first batch is written, SIGKILL one actor; then note whether Ray started another."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and "killed" not in seen:
        written = len(_lines(out))
        pids = _actor_pids(temp_dir)
        if written >= total:
            return
        if written and pids:
            os.kill(pids[0], signal.SIGKILL)
            seen.update(killed=pids[0], written_at_kill=written, before=set(pids))
        time.sleep(0.1)
    while time.monotonic() < deadline and len(_lines(out)) < total:
        if set(_actor_pids(temp_dir)) - seen.get("before", set()):
            seen["restarted"] = True
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_actor_loses_nothing_and_rerun_resumes(local_ray, tmp_path):
    pytest.importorskip("psutil", reason="psutil finds the actor processes (the dev extra)")
    from asr_distill.ray_engine import label_ray

    total = 16
    manifest = write_manifest(tmp_path / "m.jsonl", fixture_lines(copies=2))
    out = tmp_path / "labels.jsonl"
    run = LabelRun("tiny.en", batch_size=2)
    seen: dict = {}
    killer = threading.Thread(target=_kill_an_actor_mid_run, args=(out, local_ray, total, seen), daemon=True)
    killer.start()
    stats = label_ray(manifest, out, run, workers=2, rows_per_call=2)
    killer.join(timeout=30)
    print(f"kill: {seen}", file=sys.stderr)
    assert "killed" in seen, "labeling finished before an actor could be killed; make the manifest longer"
    assert 0 < seen["written_at_kill"] < total
    ids = [d["id"] for d in _lines(out)]
    assert len(ids) == len(set(ids)) == total  # 0 lost, 0 duplicated
    assert sorted(ids) == sorted(d["id"] for d in fixture_lines(copies=2))
    assert stats.labeled == total and stats.skipped == 0 and not _lines(skips_path(out))
    by_clip = {(i.split("-", 1)[1], t) for i, t in _texts(out).items()}
    assert len(by_clip) == total // 2, "the two copies of a clip were labeled differently"
    before = snapshot(out, skips_path(out))
    again = label_ray(manifest, out, run, workers=2, rows_per_call=2)
    assert (again.labeled, again.skipped, again.already_done) == (0, 0, total)
    assert snapshot(out, skips_path(out)) == before


def _batch(records: list) -> dict:
    """A batch as an actor returns it (``LabelActor.__call__``)."""
    kinds = ["skip" if isinstance(r, Skip) else "label" for r in records]
    return {
        "kind": np.array(kinds, dtype=object),
        "id": np.array([r.id for r in records], dtype=object),
        "line": np.array([json.dumps(r.to_dict()) for r in records], dtype=object),
    }


def test_driver_writes_each_record_once(tmp_path):
    """A batch that arrives twice (retried), or holds ids already written, adds nothing twice."""
    from asr_distill.ray_engine import _write_once

    out = tmp_path / "labels.jsonl"
    out.write_text(json.dumps(make_label(id="old").to_dict()) + "\n")
    a, b = make_label(id="a", duration=2.5), make_label(id="b")
    bad = Skip("c", "/data/c.flac", "silent", "all zeros")
    batch = _batch([a, b, bad, make_label(id="old")])
    with open_label_files(out, []) as files:
        labeled, audio_s, skipped = _write_once(iter([batch, batch, _batch([a])]), files)
    assert (labeled, skipped, audio_s) == (2, 1, 4.5)
    assert [d["id"] for d in _lines(out)] == ["old", "a", "b"]
    assert [(d["id"], d["reason"]) for d in _lines(skips_path(out))] == [("c", "silent")]


def test_pending_rows_leave_out_what_is_written(tmp_path):
    """Done utterances are not sent; a long recording carries its finished segments' ids."""
    from asr_distill.ray_engine import _pending

    out = tmp_path / "labels.jsonl"
    out.write_text("".join(json.dumps(make_label(id=i).to_dict()) + "\n" for i in ("done", "long@0.00")))
    skips_path(out).write_text(json.dumps(Skip("dup", "/d.flac", "duplicate_id", "x").to_dict()) + "\n")
    records = [
        Utterance("done", "/done.flac", 2.0),
        Utterance("long", "/long.flac", 70.0),
        Utterance("new", "/new.flac", 3.0),
        Skip("dup", "/d.flac", "duplicate_id", "x"),
        Skip("bad", "/b.flac", "broken_line", "y"),
    ]
    with open_label_files(out, []) as files:
        rows, skips = _pending(records, files)
    assert [(json.loads(r["record"])["id"], r["done"]) for r in rows] == [
        ("long", ["long@0.00"]),
        ("new", []),
    ]
    assert [s.id for s in skips] == ["bad"]


def test_actor_resources_fit_the_nodes():
    from asr_distill.ray_engine import _actor_resources

    def cluster(*nodes):
        return SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": r} for r in nodes])

    two_by_8 = cluster({"CPU": 8.0}, {"CPU": 8.0})
    assert _actor_resources(two_by_8, 4, use_gpus=True) == (0, 4)
    assert _actor_resources(two_by_8, 3, use_gpus=True) == (0, 4)  # 3 x 5 would not fit on 8 + 8
    assert _actor_resources(cluster({"CPU": 2.0}), 2, use_gpus=True) == (0, 1)
    gpus = cluster({"CPU": 16.0, "GPU": 2.0})
    assert _actor_resources(gpus, 2, use_gpus=True) == (1, 1)
    assert _actor_resources(gpus, 2, use_gpus=False) == (0, 8)
    with pytest.raises(ValueError, match="at most 2 workers"):
        _actor_resources(gpus, 3, use_gpus=True)
    with pytest.raises(ValueError, match="at most 2 workers"):
        _actor_resources(cluster({"CPU": 2.0}), 3, use_gpus=False)


def test_refusals_come_before_any_output(tmp_path, monkeypatch):
    from asr_distill.ray_engine import label_ray

    out = tmp_path / "labels.jsonl"
    for run, workers, match in [
        (LabelRun("tiny.en"), 0, "workers must be >= 1"),
        (LabelRun(SimpleNamespace()), 1, "name or path"),
        (LabelRun("tiny.en", shard=(0, 2)), 1, "shard"),
    ]:
        with pytest.raises(ValueError, match=match):
            label_ray(FIXTURE, out, run, workers=workers)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"pip install 'asr_distill\[ray\]'"):
        label_ray(FIXTURE, out, LabelRun("tiny.en"))
    assert list(tmp_path.iterdir()) == []
