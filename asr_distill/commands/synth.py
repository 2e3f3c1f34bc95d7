"""``asr-distill synth``: speech with a known transcript, support calls or general speech (Piper TTS).

Write N templated support-call utterances (product names, order numbers, amounts, dates, addresses),
or with --corpus general everyday sentences, spelled names and digit strings (general speech a
student should not forget: a replay set for training), as 16 kHz WAV with Piper's offline voice,
and their manifest OUT/manifest.jsonl. Existing files are kept (resumable).
"""

from __future__ import annotations

from . import add_force, subcommand

SUMMARY = "synthesise speech with a known transcript: support calls or general speech (Piper TTS)"


def add_parser(sub) -> None:
    """Add ``synth`` to the CLI's subcommands."""
    p = subcommand(sub, "synth", run, SUMMARY, __doc__)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", choices=("support", "general"), default="support")
    add_force(p, "write into an existing --out folder that holds files synth did not write")


def run(args) -> int:
    """Synthesise into ``--out`` under its lock, once it is checked to be empty or ours."""
    from ..outputs import guard_output
    from ..synth import write_corpus

    with guard_output(args.out, kind="synth_dir", force=args.force) as out:
        manifest = write_corpus(out, args.n, seed=args.seed, corpus=args.corpus)
    print(f"wrote {args.n} utterances and {manifest}")
    return 0
