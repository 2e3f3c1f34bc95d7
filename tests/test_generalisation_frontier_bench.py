"""benchmarks/generalisation_frontier.py: runs merged across files, seeds passing every bar."""

from __future__ import annotations

import json

import pytest

from asr_distill.testing.bench import load_benchmark

gf = load_benchmark("generalisation_frontier")


def _result(
    variant: str | None, verdicts: dict[str, dict[int, bool]], deltas: dict[str, dict[int, float]]
) -> dict:
    rows = [
        {"recipe": "support", "set": s, "seed": seed, "student": 10.0 + d, "tiny_en": 10.0}
        for s, per_seed in deltas.items()
        for seed, d in per_seed.items()
    ]
    rows.append(
        {"recipe": "support", "set": "in_domain", "seed": "mean", "student": "9.0 +- 1", "tiny_en": 10.0}
    )
    return {
        "variant": {"name": variant} if variant else None,
        "bars": {
            "pass": False,
            "support": {
                s: {"per_seed": [{"seed": k, "pass": v} for k, v in per_seed.items()]}
                for s, per_seed in verdicts.items()
            },
        },
        "rows": rows,
    }


def _write(tmp_path, name: str, data: dict):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_continued_run_joins_its_first_and_only_seeds_passing_every_bar_count(tmp_path):
    first = _write(
        tmp_path,
        "generalisation_support_x",
        _result(
            "x",
            {"in_domain": {0: True, 1: True, 2: False}, "an4": {0: True, 1: False, 2: True}},
            {"in_domain": {0: -2.0, 1: -1.0, 2: 0.0}, "an4": {0: 0.1, 1: 0.9, 2: 0.2}},
        ),
    )
    more = _write(
        tmp_path,
        "generalisation_support_x_seeds34",
        _result(
            "x",
            {"in_domain": {3: True, 4: True}, "an4": {3: True, 4: False}},
            {"in_domain": {3: -3.0, 4: -4.0}, "an4": {3: 0.0, 4: 0.8}},
        ),
    )
    merged = gf.runs([first, more])
    assert list(merged) == [("support", "generalisation_support_x")]
    row = gf.frontier_row(
        "support", "generalisation_support_x", merged[("support", "generalisation_support_x")], {}
    )
    assert row["seeds"] == 5
    assert row["seeds_all_bars"] == 2  # seeds 0 and 3; the "mean" text row is not a seed
    assert row["seeds_in_domain"] == "4/5" and row["seeds_an4"] == "3/5"
    assert row["in_domain_delta"] == -2.0 and row["ood_delta"] == 0.4
    assert gf.summary([row])["runs_every_bar_every_seed"]["support"] == []


def test_a_run_passing_every_bar_in_every_seed_is_named(tmp_path):
    ok = _write(
        tmp_path,
        "generalisation_support_y",
        _result(
            None,
            {"in_domain": {0: True, 1: True, 2: True}, "an4": {0: True, 1: True, 2: True}},
            {"in_domain": {0: -1.0, 1: -1.0, 2: -1.0}, "an4": {0: 0.0, 1: 0.0, 2: 0.0}},
        ),
    )
    ((key, run),) = gf.runs([ok]).items()
    row = gf.frontier_row(*key, run, {"support": key[1]})
    assert row["variant"] == "recipe" and row["shipped"]
    assert gf.summary([row])["runs_every_bar_every_seed"]["support"] == [key[1]]


def test_a_continuation_of_another_variant_is_refused(tmp_path):
    a = _write(tmp_path, "generalisation_support_z", _result("z", {"an4": {0: True}}, {"an4": {0: 0.0}}))
    b = _write(
        tmp_path, "generalisation_support_z_seeds34", _result("other", {"an4": {3: True}}, {"an4": {3: 0.0}})
    )
    with pytest.raises(ValueError, match="other"):
        gf.runs([a, b])
