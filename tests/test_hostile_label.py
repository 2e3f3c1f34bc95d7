"""Hostile inputs at the label, merge, manifest, synth, train and run command lines (issue 12).

Each case runs the real ``asr-distill`` command in this process and asserts the exact outcome:
exit code 2 with one ``error:`` line naming the file (and shard, holder or key), nothing
written that should not be, every input byte for byte as it was, and no payload run. Cases of
``bad_inputs.HOSTILE_CASES`` that test_hostile.py checks at the library level (an output equal
to the input, a symlinked output, a held lock...) are checked here again through the CLI.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
from bad_inputs import HOSTILE_NAMES, LABEL_HOSTILE_NAMES, crafted_pickle, manifest_bytes, speechlike
from conftest import FIXTURE, fixture_lines

from asr_distill.label import shard_path, skips_path
from asr_distill.testing.cli import BIG_REFERENCE_BYTES, big_text, hold_output, logged, run_cli, snapshot

MODEL = ("--model", "tiny.en", "--no-progress")
PAYLOAD = "payload_ran"  # the folder a crafted pickle would create: never there after a case


class DataLost(AssertionError):
    """A case changed or removed a file it had no business touching."""


ROOT = Path(__file__).resolve().parent.parent


def _kept(before: dict[Path, bytes], *roots) -> None:
    after = snapshot(*roots)
    changed = sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))
    if changed:
        raise DataLost(f"files changed or added: {changed[:5]}")


def _refused(argv, words, *, unchanged=(), absent=()) -> str:
    """Exit 2, one ``error:`` line holding ``words``, ``unchanged`` as it was, ``absent`` not made."""
    before = snapshot(*unchanged)
    rc, _, err = run_cli(*argv)
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert rc == 2 and "Traceback" not in err and line.startswith("error: "), (rc, err[-2000:])
    assert all(w in line for w in words), (words, line)
    _kept(before, *unchanged)
    assert not [a for a in absent if Path(a).exists() or Path(a).is_symlink()], absent
    return line


def _ok(*argv) -> str:
    rc, out, err = run_cli(*argv)
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    return out


def _manifest(tmp_path: Path, n: int = 2, name: str = "m.jsonl", ids: bool = True) -> Path:
    lines = fixture_lines()[:n]
    if not ids:
        lines = [{k: v for k, v in d.items() if k != "id"} for d in lines]
    path = tmp_path / name
    path.write_bytes(manifest_bytes(lines))
    return path


def _label(manifest: Path, out: Path, *extra) -> str:
    return _ok("label", manifest, "--out", out, *MODEL, *extra)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _label_refused(tmp_path: Path, out: Path, words, *, manifest: Path | None = None, extra=()) -> None:
    manifest = manifest or _manifest(tmp_path)
    _refused(["label", manifest, "--out", out, *MODEL, *extra], [str(out), *words], unchanged=[tmp_path])


# --- label: outputs ---------------------------------------------------------------------------


def _out_is_input(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    for force in ((), ("--force",)):
        _label_refused(tmp_path, m, ["is the input"], manifest=m, extra=force)


def _out_is_idless_input(tmp_path: Path) -> None:
    m = _manifest(tmp_path, ids=False)
    _label_refused(tmp_path, m, ["is the input"], manifest=m)  # not KeyError: 'id'


def _out_other_idless_manifest(tmp_path: Path) -> None:
    other = _manifest(tmp_path, name="train.jsonl", ids=False)
    _label_refused(tmp_path, other, ["line 1 is not a teacher label", "--force"])


def _hard_link(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    os.link(m, tmp_path / "out.jsonl")
    _label_refused(tmp_path, tmp_path / "out.jsonl", ["is the input"], manifest=m)


def _symlink_outside(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "labels.jsonl"
    target.parent.mkdir()
    target.write_text("precious\n")
    (tmp_path / "link.jsonl").symlink_to(target)
    for force in ((), ("--force",)):
        _label_refused(tmp_path, tmp_path / "link.jsonl", ["symbolic link", str(target)], extra=force)


def _symlink_to_input(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    (tmp_path / "link.jsonl").symlink_to(m)
    _label_refused(tmp_path, tmp_path / "link.jsonl", ["is the input"], manifest=m, extra=("--force",))


def _unrelated(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    _label_refused(tmp_path, notes, ["not a labels file", "line 1 is not JSON", "--force"])


def _unrelated_forced(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    before = m.read_bytes()
    with logged() as messages:
        out = _label(m, notes, "--force")
    assert "labeled 2" in out and sorted(d["id"] for d in _rows(notes)) == sorted(
        d["id"] for d in fixture_lines()[:2]
    )
    assert m.read_bytes() == before and any("--force: replacing" in x for x in messages)


def _manifest_as_labels(tmp_path: Path) -> None:
    other = _manifest(tmp_path, name="train.jsonl")
    _label_refused(tmp_path, other, ["line 1 is not a teacher label"])


def _skips_foreign(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    skips_path(out).write_text("not mine to lose\n")
    _refused(
        ["label", _manifest(tmp_path), "--out", out, *MODEL],
        [str(skips_path(out)), "not a labels file"],
        unchanged=[tmp_path],
        absent=[out],
    )


def _parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "labels.jsonl"
    _refused(
        ["label", _manifest(tmp_path), "--out", out, *MODEL], ["cannot write", str(out)], unchanged=[tmp_path]
    )


def _out_is_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "labels.jsonl"
    d.mkdir()
    (d / "keep.txt").write_text("mine\n")
    for force in ((), ("--force",)):
        _label_refused(tmp_path, d, ["it is a folder, and this step writes a file"], extra=force)


def _folder_manifest_foreign(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(FIXTURE.parent / fixture_lines()[0]["audio_filepath"], audio)
    out = tmp_path / "labels.jsonl"
    (tmp_path / "labels.input.jsonl").write_text("a list of mine\n")
    _refused(
        ["label", audio, "--out", out, *MODEL],
        [str(tmp_path / "labels.input.jsonl"), "not a manifest"],
        unchanged=[tmp_path],
        absent=[out],
    )


def _missing_input(tmp_path: Path) -> None:
    _refused(
        ["label", tmp_path / "nope.jsonl", "--out", tmp_path / "l.jsonl", *MODEL],
        [str(tmp_path / "nope.jsonl"), "does not exist"],
        unchanged=[tmp_path],
    )


def _empty_directory(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    out = _label(d, tmp_path / "labels.jsonl")
    assert "labeled 0" in out and not list(d.iterdir())


def _resume_truncated(tmp_path: Path) -> None:
    m, out = _manifest(tmp_path), tmp_path / "labels.jsonl"
    _label(m, out)
    data = out.read_bytes()
    first = data.split(b"\n")[0] + b"\n"
    out.write_bytes(data[: len(first) + 40])  # a kill in the middle of the second line
    assert "labeled 1 (already done 1)" in _label(m, out)
    rows = _rows(out)
    assert out.read_bytes().startswith(first) and len({d["id"] for d in rows}) == len(rows) == 2


# --- label: models, reading, audio, cost ----------------------------------------------------


def _crafted_model(legacy: bool) -> Callable[[Path], None]:
    def case(tmp_path: Path) -> None:
        pt = crafted_pickle(tmp_path / "model.pt", tmp_path / PAYLOAD, legacy=legacy)
        out = tmp_path / "labels.jsonl"
        _refused(
            ["label", _manifest(tmp_path), "--out", out, "--model", pt, "--no-progress"],
            [str(pt), "holds Python objects", "mkdir"],
            unchanged=[tmp_path],
            absent=[out, tmp_path / PAYLOAD],
        )

    return case


def _truncated_model(tmp_path: Path) -> None:
    import torch

    pt = tmp_path / "model.pt"
    torch.save({"dims": {}, "model_state_dict": {"w": torch.zeros(1000)}}, pt)
    pt.write_bytes(pt.read_bytes()[:700])
    _refused(
        ["label", _manifest(tmp_path), "--out", tmp_path / "l.jsonl", "--model", pt],
        [str(pt), "not a readable torch checkpoint"],
        unchanged=[tmp_path],
    )


def _label_reads(
    data: Callable[[bytes], bytes], name: str, labeled: int, skips: list[str], words: str = ""
) -> Callable[[Path], None]:
    def case(tmp_path: Path) -> None:
        m = tmp_path / name
        m.write_bytes(data(manifest_bytes(fixture_lines()[:3])))
        out = tmp_path / "labels.jsonl"
        _label(m, out)
        got = _rows(skips_path(out))
        assert len(_rows(out)) == labeled and [s["reason"] for s in got] == skips, got
        assert all(str(m) in s["message"] and words in s["message"] for s in got)

    return case


def _latin1(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[1] = lines[1].replace(b'"text": "', b'"text": "caf\xe9 ')
    return b"\n".join(lines)


def _clips(tmp_path: Path, scales) -> Path:
    rng = np.random.default_rng(0)
    good = fixture_lines()[0]
    lines = []
    for i, scale in enumerate(scales):
        if scale is None:
            lines.append(dict(good, id=f"good{i}"))
            continue
        path = tmp_path / f"x{i}.wav"
        sf.write(path, speechlike(2.0, 16000, rng) * np.float32(scale), 16000, subtype="FLOAT")
        lines.append({"id": f"bad{i}", "audio_filepath": str(path), "duration": 2.0})
    m = tmp_path / "m.jsonl"
    m.write_bytes(manifest_bytes(lines))
    return m


def _x1e20_between_good(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    _label(_clips(tmp_path, (None, 1e20, None)), out, "--batch-size", "3")
    assert [d["id"] for d in _rows(out)] == ["good0", "good2"]
    (skip,) = _rows(skips_path(out))
    assert skip["reason"] == "out_of_range" and str(tmp_path / "x1.wav") in skip["message"]


def _features_isolated(tmp_path: Path) -> None:
    """Audio the sample checks let through (patched away here) meets the feature check per clip."""
    m, out = _clips(tmp_path, (None, 1e20, 1e12, None)), tmp_path / "labels.jsonl"
    with mock.patch("asr_distill.audio._check_scale", lambda *a: None):
        _label(m, out, "--batch-size", "4")
        assert sorted(d["id"] for d in _rows(out)) == ["good0", "good3"]
        skips = {d["id"]: d for d in _rows(skips_path(out))}
        assert sorted(skips) == ["bad1", "bad2"]
        assert all(d["reason"] == "non_finite_features" for d in skips.values())
        assert str(tmp_path / "x1.wav") in skips["bad1"]["message"]
        assert "not finite" in skips["bad1"]["message"]
        assert "peak at" in skips["bad2"]["message"]
        assert "already done 4" in _label(m, out)  # a rerun redoes nothing, records nothing twice
        assert len(_rows(skips_path(out))) == 2


def _big_reference(tmp_path: Path) -> None:
    lines = fixture_lines()[:2]
    lines[1]["text"] = big_text(BIG_REFERENCE_BYTES)
    m, out = tmp_path / "m.jsonl", tmp_path / "labels.jsonl"
    m.write_bytes(manifest_bytes(lines))
    start = time.perf_counter()
    with logged() as messages:
        stdout = _label(m, out)
    assert time.perf_counter() - start < 120 and "over 1 utterances" in stdout
    assert any("too long to align" in x and lines[1]["id"] in x for x in messages)
    assert len(_rows(out)) == 2


# --- merge ------------------------------------------------------------------------------------


def _shards(tmp_path: Path, count: int = 2) -> Path:
    """``count`` shard files of teacher labels for ``labels.jsonl``, as sharded label runs leave them."""
    from asr_distill.records import to_json
    from asr_distill.testing.labels import make_label

    out = tmp_path / "labels.jsonl"
    for i in range(count):
        shard_path(out, (i, count)).write_text(to_json(make_label("enter seven", id=f"u{i}")) + "\n")
    return out


def _lock_probe(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    shard = shard_path(out, (1, 2))
    proc = hold_output(shard, "labels")
    try:
        _refused(
            ["merge", out],
            [str(shard), f"pid {proc.pid}:", "still being written"],
            unchanged=[tmp_path],
            absent=[out],
        )
    finally:
        proc.kill()
        proc.wait()
    assert "merged 2 labels" in _ok("merge", out)


def _merge_locked(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    proc = hold_output(out, "labels")
    try:
        _refused(["merge", out], [str(out), f"pid {proc.pid}:"], unchanged=[tmp_path], absent=[])
    finally:
        proc.kill()
        proc.wait()


def _merge_missing(tmp_path: Path) -> None:
    out = _shards(tmp_path, 3)
    shard_path(out, (1, 3)).unlink()
    _refused(["merge", out], ["shards [1] of 3 are missing", str(out)], unchanged=[tmp_path], absent=[out])


def _merge_unrelated(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    out.write_text("my notes\n")
    _refused(["merge", out], [str(out), "not a labels file", "--force"], unchanged=[tmp_path])
    assert "merged 2 labels" in _ok("merge", out, "--force")


def _merge_symlink(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    (tmp_path / "real.txt").write_text("mine\n")
    out.symlink_to(tmp_path / "real.txt")
    for force in ((), ("--force",)):
        _refused(["merge", out, *force], [str(out), "symbolic link"], unchanged=[tmp_path])


def _merge_shard_foreign(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    shard_path(out, (1, 2)).write_text("someone's notes\n")
    _refused(
        ["merge", out], [str(shard_path(out, (1, 2))), "not a label file"], unchanged=[tmp_path], absent=[out]
    )


def _merge_shard_torn(tmp_path: Path) -> None:
    out = _shards(tmp_path)
    shard = shard_path(out, (0, 2))
    shard.write_bytes(shard.read_bytes() + b'{"id": "u9", "text": "ent')
    _refused(["merge", out], [str(shard), "rerun that shard"], unchanged=[tmp_path], absent=[out])


# --- manifest, synth --------------------------------------------------------------------------


def _audio_dir(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    d.mkdir()
    shutil.copy(FIXTURE.parent / fixture_lines()[0]["audio_filepath"], d)
    return d


def _manifest_unrelated(tmp_path: Path) -> None:
    d, notes = _audio_dir(tmp_path), tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    _refused(["manifest", d, "--out", notes], [str(notes), "not a manifest", "--force"], unchanged=[tmp_path])
    _ok("manifest", d, "--out", notes, "--force")
    assert len(_rows(notes)) == 1


def _manifest_symlink(tmp_path: Path) -> None:
    d = _audio_dir(tmp_path)
    (tmp_path / "real.jsonl").write_text("")
    (tmp_path / "m.jsonl").symlink_to(tmp_path / "real.jsonl")
    _refused(
        ["manifest", d, "--out", tmp_path / "m.jsonl", "--force"], ["symbolic link"], unchanged=[tmp_path]
    )


def _synth_unrelated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("\\section{}")
    _refused(
        ["synth", "--n", "2", "--out", home],
        [str(home), "thesis.tex: this step does not write it"],
        unchanged=[tmp_path],
    )


def _synth_file(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    for force in ((), ("--force",)):
        _refused(
            ["synth", "--n", "2", "--out", notes, *force], [str(notes), "it is a file"], unchanged=[tmp_path]
        )


# --- run, train -------------------------------------------------------------------------------


def _run_config(tmp_path: Path, root: Path) -> Path:
    import yaml

    train = _manifest(tmp_path, name="train.jsonl")
    cfg = {
        "out": str(root),
        "data": {"train": str(train), "test": str(train)},
        "label": {"teacher": "tiny.en"},
        "filter": {"normaliser": "none"},
        "train": {"config": str(ROOT / "recipes" / "support" / "student.yaml")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_crafted_ckpt(tmp_path: Path) -> None:
    root = tmp_path / "run"
    config = _run_config(tmp_path, root)
    for stage in ("label", "filter", "train"):
        (root / stage).mkdir(parents=True)
        (root / stage / ".done").write_text("{}\n")
    ckpt = crafted_pickle(root / "train" / "checkpoints" / "last.ckpt", tmp_path / PAYLOAD, legacy=False)
    _refused(
        ["run", config, "--from", "export"],
        [str(ckpt), "holds Python objects", "refused"],
        unchanged=[root / "train", root / "label", config],
        absent=[tmp_path / PAYLOAD, root / "export" / "student.pt", root / "export" / ".done"],
    )


def _run_unrelated(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    (root / "thesis.tex").write_text("\\section{}")
    _refused(
        ["run", _run_config(tmp_path, root)],
        [str(root), "thesis.tex: this step does not write it"],
        unchanged=[tmp_path],
        absent=[root / "label"],
    )


def _run_file(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.write_text("mine\n")
    for force in ((), ("--force",)):
        _refused(
            ["run", _run_config(tmp_path, root), *force], [str(root), "it is a file"], unchanged=[tmp_path]
        )


def _run_locked(tmp_path: Path) -> None:
    root = tmp_path / "run"
    config = _run_config(tmp_path, root)
    proc = hold_output(root, "run_dir")
    try:
        _refused(
            ["run", config], [str(root), f"pid {proc.pid}:"], unchanged=[tmp_path], absent=[root / "label"]
        )
    finally:
        proc.kill()
        proc.wait()


def _train_unrelated(tmp_path: Path) -> None:
    """The run folder is checked when training sets up, before a checkpoint or config is written."""
    from asr_distill.commands.train import _run_config_callback
    from asr_distill.jsonl import UnsafeOutputError

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("\\section{}")
    trainer = mock.Mock(is_global_zero=True, checkpoint_callback=mock.Mock(dirpath=str(home / "checkpoints")))
    callback = _run_config_callback()(mock.Mock(), mock.Mock())
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeOutputError, match="thesis.tex: this step does not write it"):
        callback.setup(trainer, mock.Mock(), "fit")
    _kept(before, tmp_path)
    assert callback._lock is None
    forced = _run_config_callback(force=True)(mock.Mock(), mock.Mock())
    with mock.patch("lightning.pytorch.cli.SaveConfigCallback.setup"):
        forced.setup(trainer, mock.Mock(), "fit")
    forced.teardown(trainer, mock.Mock(), "fit")
    assert (home / "thesis.tex").read_text() == "\\section{}"


CASES: dict[str, Callable[[Path], None]] = {
    # the cases test_hostile.py checks at the library level, here through the CLI
    "output_is_input": _out_is_input,
    "output_hard_link_to_input": _hard_link,
    "output_symlink_file": _symlink_outside,
    "output_symlink_to_input": _symlink_to_input,
    "output_unrelated_file": _unrelated,
    "output_unrelated_file_forced": _unrelated_forced,
    "output_manifest_as_labels": _manifest_as_labels,
    "lock_held_names_holder": lambda tmp_path: _label_locked(tmp_path),
    "lock_probe_for_merge": _lock_probe,
    "manifest_utf8_bom": _label_reads(lambda b: b"\xef\xbb\xbf" + b, "m.jsonl", 3, []),
    "manifest_gzip_named_gz": _label_reads(gzip.compress, "m.jsonl.gz", 3, []),
    "manifest_latin1_line": _label_reads(_latin1, "m.jsonl", 2, ["bad_manifest_line"], "line 2: not UTF-8"),
    # label, merge, manifest, synth, run, train
    "label_out_is_idless_input": _out_is_idless_input,
    "label_out_other_idless_manifest": _out_other_idless_manifest,
    "label_skips_file_foreign": _skips_foreign,
    "label_out_parent_is_a_file": _parent_is_a_file,
    "label_out_is_a_directory": _out_is_a_directory,
    "label_folder_manifest_foreign": _folder_manifest_foreign,
    "label_missing_input": _missing_input,
    "label_manifest_is_empty_directory": _empty_directory,
    "label_resume_labels_truncated_mid_line": _resume_truncated,
    "label_crafted_model_pt": _crafted_model(legacy=False),
    "label_crafted_model_pt_legacy": _crafted_model(legacy=True),
    "label_truncated_model_pt": _truncated_model,
    "label_cli_gzip_manifest": _label_reads(gzip.compress, "m.jsonl", 3, []),
    "label_cli_bom_manifest": _label_reads(
        lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"), "m.jsonl", 3, []
    ),
    "label_cli_latin1_line": _label_reads(_latin1, "m.jsonl", 2, ["bad_manifest_line"], "(byte 0xe9"),
    "label_cli_utf16_manifest": _label_reads(
        lambda b: b.decode().encode("utf-16"), "m.jsonl", 0, ["bad_manifest_line"], "UTF-16"
    ),
    "label_cli_x1e20_between_good_clips": _x1e20_between_good,
    "label_non_finite_features_isolated": _features_isolated,
    "label_cli_50mb_reference": _big_reference,
    "merge_missing_shard": _merge_missing,
    "merge_out_unrelated_file": _merge_unrelated,
    "merge_out_symlink": _merge_symlink,
    "merge_shard_not_labels": _merge_shard_foreign,
    "merge_shard_truncated_mid_line": _merge_shard_torn,
    "merge_out_locked_by_label_job": _merge_locked,
    "manifest_out_unrelated_file": _manifest_unrelated,
    "manifest_out_symlink": _manifest_symlink,
    "synth_out_unrelated_folder": _synth_unrelated,
    "synth_out_is_a_file": _synth_file,
    "run_from_export_crafted_last_ckpt": _run_crafted_ckpt,
    "run_out_unrelated_folder": _run_unrelated,
    "run_out_is_a_file": _run_file,
    "run_out_locked": _run_locked,
    "train_dir_unrelated_folder": _train_unrelated,
}


def _label_locked(tmp_path: Path) -> None:
    """A second label run on a held output is refused at once (before the model loads), naming the holder."""
    out = tmp_path / "labels.jsonl"
    proc = hold_output(out, "labels")
    try:
        start = time.perf_counter()
        _refused(
            ["label", _manifest(tmp_path), "--out", out, *MODEL],
            [str(out), f"pid {proc.pid}:"],
            unchanged=[tmp_path],
            absent=[out],
        )
        assert time.perf_counter() - start < 5
    finally:
        proc.kill()
        proc.wait()


def test_every_new_case_is_checked_here():
    assert set(LABEL_HOSTILE_NAMES) <= set(CASES) and set(CASES) <= set(HOSTILE_NAMES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_cli_case(name, tmp_path):
    CASES[name](tmp_path)
    assert not (tmp_path / PAYLOAD).exists()
