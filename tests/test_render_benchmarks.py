"""BENCHMARKS.md's cells: per-budget lists and CPU flags show; nested tables do not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_benchmarks.py"


def _render():
    spec = importlib.util.spec_from_file_location("render_benchmarks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cell_shows_short_lists_and_leaves_out_nested_ones():
    fmt = _render()._fmt
    machine = {"cores": 2, "cpu_flags": ["avx2", "amx_bf16"], "per_seed": [{"wer": 1.0}], "x": {"y": 1}}
    assert fmt(machine) == "cores 2, cpu_flags [avx2, amx_bf16]"
    assert fmt({"an4": [0.6494, 1.0], "long": list(range(20))}) == "an4 [0.6494, 1]"
