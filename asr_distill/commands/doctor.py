"""``asr-distill doctor``: what this machine offers for speed, and the precision ``auto`` chose.

Prints the CPU (model, the flags that decide matrix speed, cores), torch and its thread
count, CUDA devices, the load, and every cached ``--precision auto`` decision with the
timings behind it. ``--probe`` times the given models' encoders now (replacing their cached
decisions) and the chosen precision at 1 to N torch threads.
"""

from __future__ import annotations

import json

from . import subcommand

SUMMARY = "show the machine and the cached precision decisions; --probe times them now"


def add_parser(sub) -> None:
    """Add ``doctor`` to the CLI's subcommands."""
    p = subcommand(sub, "doctor", run, SUMMARY, __doc__)
    p.add_argument(
        "--probe", action="store_true", help="time the encoders of --model now and cache the result"
    )
    p.add_argument(
        "--model", action="append", help="teacher to time with --probe (repeatable; default: base)"
    )
    p.add_argument("--device", default="cpu", help="where --probe runs the model (cpu, cuda)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _line(d) -> str:
    """One cached decision on one line: model, where, the choice and each candidate's time."""
    times = "  ".join(f"{name} {s:.3f} s" for name, s in d.best_s.items())
    checks = ", ".join(
        f"{n} rel diff {d.rel_diff[n]:.4f} {'agrees' if d.agrees[n] else 'DIFFERS'}"
        for n in d.rel_diff
        if n != "fp32"
    )
    load = "?" if d.load is None else f"{d.load:.1f}"
    busy = " (CPU was crowded: timed again once it is quiet)" if d.busy else ""
    return (
        f"  {d.model} [{d.weights_sha256[:12]}] {d.device}, {d.threads} threads, torch {d.torch}: "
        f"auto -> {d.chosen}\n    {times}  (window {d.window_s:g} s x {d.batch}; "
        f"{checks or 'no other candidate'}; timed {d.measured}, load {load}{busy})"
    )


def _probe(args, precision) -> dict:
    """Time each ``--model`` now: precision decision and thread counts."""
    import torch

    from ..teacher import load_teacher

    out = {}
    for name in args.model or ["base"]:
        teacher = load_teacher(name, device=args.device)
        decision = precision.measure_again(teacher, torch.device(args.device))
        counts = sorted({1, max(1, (precision.cpu_info().cores or 1) // 2), precision.cpu_info().cores or 1})
        threads = precision.time_threads(teacher, decision.chosen, counts) if args.device == "cpu" else {}
        out[name] = {"decision": decision, "threads_s": threads}
    return out


def run(args) -> int:
    """Print the machine and the cache (and, with ``--probe``, time the models first)."""
    import torch

    from ..teacher import precision

    if args.threads:
        torch.set_num_threads(args.threads)
    probed = _probe(args, precision) if args.probe else {}
    machine = {**precision.machine(), "load": precision.load_average()}
    path = precision.cache_path()
    decisions, problem = precision.load_decisions(path)
    if args.json:
        doc = {
            "machine": machine,
            "cache": str(path),
            "cache_problem": problem,
            "decisions": {k: vars(d) for k, d in decisions.items()},
            "threads_s": {name: p["threads_s"] for name, p in probed.items()},
        }
        print(json.dumps(doc, indent=2, default=list))
        return 0
    print(f"cpu       {machine['cpu_model']} ({machine['cores']} cores), load {machine['load']}")
    print(f"flags     {' '.join(machine['cpu_flags']) or '(none of the speed flags)'}")
    print(f"torch     {machine['torch']}, {machine['torch_threads']} threads")
    print(f"cuda      {', '.join(machine['cuda']) or 'none'}")
    print(f"precision cache {path}" + (f": {problem}" if problem else f" ({len(decisions)} decisions)"))
    for d in decisions.values():
        print(_line(d))
    for name, p in probed.items():
        if p["threads_s"]:
            times = ", ".join(f"{n}: {s:.3f} s" for n, s in p["threads_s"].items())
            print(f"threads   {name} encoder in {p['decision'].chosen}, one window by torch threads: {times}")
    return 0
