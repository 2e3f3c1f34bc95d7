"""``asr-distill export``: a student checkpoint → openai-whisper ``.pt`` (+ CTranslate2, ONNX, GGML).

Write CKPT's student as an openai-whisper checkpoint that whisper.load_model opens; with --ct2
as a CTranslate2 folder that faster_whisper.WhisperModel opens; with --onnx as an ONNX folder
(encoder + decoder with a key/value cache) that onnxruntime runs; with --ggml as a whisper.cpp
model file. Each carries the student's self-description (tokenizer, normaliser, window policy,
training config, label provenance), and asr-distill evaluate takes each as a model.

Several checkpoints (students of one start trained on the same labels with other seeds) are
averaged weight by weight first, a uniform model soup; --wise-alpha then mixes the soup with
the starting model. The pipeline's train.members does both for a run.
"""

from __future__ import annotations

from . import add_force, add_out, subcommand

SUMMARY = "export a trained student: openai-whisper .pt (and CTranslate2, ONNX, GGML for other runtimes)"


def add_parser(sub) -> None:
    """Add ``export`` to the CLI's subcommands."""
    p = subcommand(sub, "export", _cmd_export, SUMMARY, __doc__)
    p.add_argument(
        "ckpt",
        nargs="+",
        help="Lightning checkpoint written by asr-distill train (RUN/checkpoints/*.ckpt); several "
        "students of one start trained on the same labels are averaged weight by weight (a model soup)",
    )
    add_out(p, "output .pt")
    p.add_argument("--ct2", default=None, metavar="DIR", help="also write a CTranslate2 folder here")
    p.add_argument(
        "--onnx",
        default=None,
        metavar="DIR",
        help="also write an ONNX folder (encoder.onnx, decoder.onnx) here",
    )
    p.add_argument(
        "--ggml", default=None, metavar="FILE", help="also write a whisper.cpp GGML model file here"
    )
    p.add_argument("--half", action="store_true", help="store float16 weights in the .pt (half the size)")
    p.add_argument(
        "--wise-alpha",
        type=_fraction,
        default=1.0,
        metavar="A",
        help="keep this fraction of training's change, the rest back to the starting model "
        "(WiSE-FT; 1: the trained student, 0: the start)",
    )
    add_force(p, "replace an existing --out (or --ct2/--onnx folder, --ggml file) that export did not write")


def _fraction(value: str) -> float:
    import argparse

    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return x


def _outputs(args) -> list[tuple[str, str, list[str]]]:
    """``(path, kind, inputs)`` of each output: the ``.pt``, and each other format asked for."""
    found = [(args.out, "export", list(args.ckpt))]
    others = [(args.ct2, "export_ct2"), (args.onnx, "export_onnx"), (args.ggml, "export_ggml")]
    return found + [(out, kind, [*args.ckpt, args.out]) for out, kind in others if out]


def _force(args, out: str, kind: str) -> bool:
    """``--force`` replaces an output of the same shape only: never a folder with a file, or back."""
    from pathlib import Path

    path = Path(out)
    return args.force and (not path.exists() or path.is_dir() == (kind in ("export_ct2", "export_onnx")))


def _cmd_export(args) -> int:
    from contextlib import ExitStack
    from pathlib import Path

    from ..outputs import check_output, guard_output
    from ..student.export import export_ct2, export_whisper_pt, load_student_soup, tokenizer_ct2_dir

    ckpts = [Path(c) for c in args.ckpt]
    for ckpt in ckpts:
        if not ckpt.is_file():
            raise SystemExit(f"error: checkpoint {ckpt} does not exist")
    for out, kind, inputs in _outputs(args):  # refuse before the (slow) load, then lock after it
        check_output(out, inputs=inputs, kind=kind, force=_force(args, out, kind))
    module = load_student_soup(ckpts, wise_alpha=args.wise_alpha)  # ValueError: one line, exit 2
    desc = module.describe() | {"exported_from": str(ckpts[0].resolve())}
    with ExitStack() as stack:
        for out, kind, inputs in _outputs(args):
            stack.enter_context(guard_output(out, inputs=inputs, kind=kind, force=_force(args, out, kind)))
        out = export_whisper_pt(module.model, args.out, desc, half=args.half)
        print(f"wrote {out} ({module.layout.describe()})")
        if args.ct2:
            side = tokenizer_ct2_dir(module)
            if side is None:
                raise SystemExit(
                    "error: the student's tokenizer source has no CTranslate2 folder to copy "
                    "tokenizer.json from; export the .pt only"
                )
            print(f"wrote {export_ct2(module.model, args.ct2, side, desc)}")
        _other_formats(args, module, desc)
    return 0


def _other_formats(args, module, desc: dict) -> None:
    """The ONNX folder and the GGML file, when asked for (outputs already guarded)."""
    from pathlib import Path

    if args.onnx:
        from ..student.onnx import export_onnx

        print(f"wrote {export_onnx(module.model, args.onnx, desc)}")
    if args.ggml:
        from ..student.ggml import export_ggml

        print(f"wrote {export_ggml(module.model, Path(args.ggml), desc, module.model.is_multilingual)}")
