"""ONNX export: the graphs match PyTorch, open in ONNX Runtime, and decode as the PyTorch student does.

A small random Whisper checks the graphs at several window lengths and cache sizes in a
few seconds; tiny.en's own weights, exported with a student's window policy, check the
whole path on the committed AN4 clips against the PyTorch decode of the same model.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from whisper.model import ModelDimensions, Whisper

from asr_distill.metrics import word_error_rate
from asr_distill.outputs import UnsafeOutputError, check_output
from asr_distill.student.short_context import WindowPolicy

ort = pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime")

# mels; audio ctx, state, heads, layers; vocabulary; text ctx, state, heads, layers. The full
# 1500-position audio context, so every window up to 30 s is tested; two decoder layers.
SMALL = ModelDimensions(80, 1500, 64, 2, 1, 51864, 448, 64, 2, 2)


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """A random small Whisper and its ONNX export folder."""
    from asr_distill.student.onnx import export_onnx

    torch.manual_seed(0)
    model = Whisper(SMALL).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)  # torch.empty in whisper: a checkpoint fills it
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # random layer norms too, so no path is an identity
    out = export_onnx(model, tmp_path_factory.mktemp("onnx") / "small", {"window_policy": {"short": True}})
    return model, out


def _sessions(folder):
    return [
        ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
        for f in ("encoder.onnx", "decoder.onnx")
    ]


@pytest.mark.parametrize("frames", [200, 1000, 3000])  # 2 s, 10 s and the full 30 s window
def test_onnx_graphs_match_pytorch_with_a_growing_cache(small_export, frames):
    from asr_distill.features import encode_mels

    model, folder = small_export
    encoder, decoder = _sessions(folder)
    torch.manual_seed(frames)
    mel = torch.randn(2, SMALL.n_mels, frames) * 0.5
    cross_k, cross_v = encoder.run(None, {"mel": mel.numpy()})
    with torch.no_grad():
        features = encode_mels(model, mel)
        expected_k = model.decoder.blocks[1].cross_attn.key(features)
    assert cross_k.shape == (SMALL.n_text_layer, 2, frames // 2, SMALL.n_text_state)
    np.testing.assert_allclose(cross_k[1], expected_k.numpy(), atol=1e-4)

    tokens = torch.tensor([[50257, 50362, 314, 1101], [50257, 50362, 220, 383]])
    empty = np.zeros((SMALL.n_text_layer, 2, 0, SMALL.n_text_state), np.float32)
    feed = {"cross_k": cross_k, "cross_v": cross_v}
    # The prompt from an empty cache, then one token, then two at once on top of it.
    first, k, v = decoder.run(
        None, {"tokens": tokens[:, :2].numpy(), "self_k": empty, "self_v": empty} | feed
    )
    second, k, v = decoder.run(None, {"tokens": tokens[:, 2:3].numpy(), "self_k": k, "self_v": v} | feed)
    assert k.shape[2] == 3
    third, _, _ = decoder.run(
        None, {"tokens": tokens[:, 2:].numpy(), "self_k": k[:, :, :2], "self_v": v[:, :, :2]} | feed
    )
    with torch.no_grad():
        full = model.decoder(tokens, features).numpy()  # (B, 4, V), no cache
    np.testing.assert_allclose(first, full[:, :2], atol=2e-4)
    np.testing.assert_allclose(second[:, 0], full[:, 2], atol=2e-4)
    np.testing.assert_allclose(third, full[:, 2:], atol=2e-4)


def test_onnx_export_stores_the_embedding_once_and_describes_itself(small_export):
    import json

    from asr_distill.student.onnx import is_onnx_export, read_description

    model, folder = small_export
    params = sum(p.numel() for p in model.parameters())
    size = sum((folder / f).stat().st_size for f in ("encoder.onnx", "decoder.onnx"))
    assert size < 4 * params * 1.1, "a weight is stored twice"
    config = json.loads((folder / "config.json").read_text())
    assert config["dims"] == asdict(SMALL) and config["n_params"] == params
    assert read_description(folder) == {"window_policy": {"short": True}}
    assert (
        is_onnx_export(folder)
        and not is_onnx_export(folder / "config.json")
        and not is_onnx_export("tiny.en")
    )


def test_onnx_output_folder_is_guarded(small_export, tmp_path):
    _, folder = small_export
    assert check_output(folder, kind="export_onnx") == folder  # ours: resumable
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeOutputError, match="not a export_onnx"):
        check_output(foreign, kind="export_onnx")
    check_output(foreign, kind="export_onnx", force=True)


def test_onnx_runner_refuses_beam_search(small_export):
    from asr_distill.student.onnx import load_onnx
    from asr_distill.teacher.options import DecodePass

    teacher, backend = load_onnx(small_export[1])
    assert teacher.n_params == sum(p.numel() for p in small_export[0].parameters())
    features = backend.encode([np.zeros(16000, np.float32)], 2.0)
    with pytest.raises(ValueError, match="beam search"):
        backend.generate(features, DecodePass("en", beam_size=5))


@pytest.mark.slow
def test_onnx_student_transcribes_as_the_pytorch_model(tmp_path, tiny_teacher, an4_fixture):
    """tiny.en exported with a student's window policy: same words as PyTorch on real speech."""
    from asr_distill.evaluate import check_model_files, guarded, transcribe
    from asr_distill.student.onnx import export_onnx
    from asr_distill.student.short_context import student_options

    policy = WindowPolicy()
    folder = export_onnx(tiny_teacher.model, tmp_path / "tiny_onnx", {"window_policy": asdict(policy)})
    check_model_files([f"onnx={folder}"])  # a folder: nothing is torch-loaded
    onnx = transcribe(folder, an4_fixture, name="onnx")  # the window policy read from the folder
    pytorch = transcribe(tiny_teacher, an4_fixture, options=guarded(student_options(policy)))
    assert len(onnx.ids) == len(pytorch.ids) == 8 and onnx.ids == pytorch.ids
    assert onnx.params == pytorch.params and onnx.wall_s > 0 and onnx.rtfx > 0
    same = sum(a == b for a, b in zip(onnx.hyps, pytorch.hyps, strict=True))
    assert same >= 7, list(zip(onnx.hyps, pytorch.hyps, strict=True))
    wer_onnx = word_error_rate(onnx.refs, onnx.hyps, "format_insensitive").wer
    wer_pt = word_error_rate(pytorch.refs, pytorch.hyps, "format_insensitive").wer
    assert abs(wer_onnx - wer_pt) <= 0.3
    assert wer_onnx < 30  # tiny.en reads these clips; a broken decoder writes nothing or loops


@pytest.mark.parametrize("flag", ["--onnx", "--ggml"])
def test_export_refuses_a_foreign_onnx_or_ggml_output_before_loading(tmp_path, flag):
    from asr_distill.testing.cli import run_cli

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"not read: the outputs are checked first")
    foreign = tmp_path / "theirs"
    if flag == "--onnx":
        foreign.mkdir()
        (foreign / "notes.txt").write_text("mine")
    else:
        foreign.write_text("someone's notes")
    rc, _, err = run_cli("export", ckpt, "--out", tmp_path / "student.pt", flag, foreign)
    assert rc == 2 and "not a export_" in err, err
    assert not (tmp_path / "student.pt").exists()
