"""whisper.cpp GGML export: the file layout, refusal of broken files, and parity with PyTorch decoding."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from conftest import fixture_lines, write_manifest
from test_whisper_api import _tiny_whisper  # a random one-layer English Whisper, built in milliseconds

from asr_distill.student.ggml import (
    MAGIC_BYTES,
    GGMLFormatError,
    WhisperCpp,
    expected_tensors,
    export_ggml,
    is_ggml,
    read_ggml_header,
    sidecar_path,
    transcribe_ggml,
)


@pytest.fixture(scope="module")
def small_ggml(tmp_path_factory):
    """(path, model) of a randomly initialised small English Whisper exported to GGML."""
    model = _tiny_whisper()
    out = tmp_path_factory.mktemp("ggml") / "small.bin"
    export_ggml(model, out, {"window_policy": {"short": True}}, tokenizer_multilingual=False)
    return out, model


def _tensor_offsets(path):
    """{name: (byte offset of its data, numpy shape, dtype code)}, parsed independently of the module."""
    data = path.read_bytes()
    h = struct.unpack("<11i", data[4:48])
    n_mel, n_fft = struct.unpack("<2i", data[48:56])
    pos = 56 + 4 * n_mel * n_fft
    (n_tokens,) = struct.unpack("<i", data[pos : pos + 4])
    pos += 4
    for _ in range(n_tokens):
        pos += 4 + struct.unpack("<i", data[pos : pos + 4])[0]
    found = {}
    while pos < len(data):
        n_dims, name_len, dtype = struct.unpack("<3i", data[pos : pos + 12])
        ne = struct.unpack(f"<{n_dims}i", data[pos + 12 : pos + 12 + 4 * n_dims])
        pos += 12 + 4 * n_dims
        name = data[pos : pos + name_len].decode()
        pos += name_len
        shape = tuple(reversed(ne))
        found[name] = (pos, shape, dtype)
        pos += int(np.prod(shape)) * (2 if dtype == 1 else 4)
    return h, (n_mel, n_fft), n_tokens, found


def test_export_writes_whisper_cpp_layout(small_ggml):
    path, model = small_ggml
    hparams, filters, n_tokens, found = _tensor_offsets(path)
    assert path.read_bytes()[:4] == MAGIC_BYTES == b"lmgg" and is_ggml(path)
    assert hparams[0] == 51864 and hparams[9] == 80 and hparams[10] == 1  # n_vocab, n_mels, ftype f16
    assert filters == (80, 201) and n_tokens == 50256  # GPT-2 BPE; whisper.cpp adds the specials
    state = model.state_dict()
    assert set(found) == set(state)
    raw = path.read_bytes()
    for name, (pos, shape, dtype) in found.items():
        want = state[name].detach().numpy()
        assert int(np.prod(shape)) == want.size
        if name in (
            "encoder.conv1.bias",
            "decoder.positional_embedding",
            "encoder.blocks.0.attn.query.weight",
        ):
            got = np.frombuffer(raw, "<f2" if dtype == 1 else "<f4", want.size, pos).reshape(want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert found["encoder.conv1.bias"][1:] == ((64, 1), 0)  # float32, (n_state, 1) as whisper.cpp reads it
    assert found["encoder.blocks.0.mlp.0.weight"][1:] == ((256, 64), 1)
    assert found["decoder.positional_embedding"][2] == 0


def test_header_and_sidecar(small_ggml):
    path, model = small_ggml
    header = read_ggml_header(path)
    assert header.tensors == expected_tensors(header.hparams)
    assert header.params == sum(p.numel() for p in model.parameters())
    desc = json.loads(sidecar_path(path).read_text())
    assert desc["window_policy"] == {"short": True}
    assert desc["ggml"]["params"] == header.params and desc["ggml"]["tokenizer"] == "gpt2"
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_whisper_cpp_opens_the_export(small_ggml):
    pytest.importorskip("pywhispercpp", reason="pywhispercpp not installed (the ggml extra)")
    engine = WhisperCpp(small_ggml[0], threads=1)
    try:
        assert engine.model._ctx is not None
    finally:
        engine.close()


def test_tokenizer_must_match_the_vocabulary(tmp_path):
    model = _tiny_whisper()
    with pytest.raises(ValueError, match="n_vocab=51864"):
        export_ggml(model, tmp_path / "m.bin", {}, tokenizer_multilingual=True)
    assert not (tmp_path / "m.bin").exists()


def _cuts(path):
    """Byte counts to keep: inside the hparams, filters, vocabulary, a tensor header, tensor data."""
    _, _, _, found = _tensor_offsets(path)
    offsets = sorted(pos for pos, _, _ in found.values())
    size = path.stat().st_size
    return {
        "empty": 0,
        "hparams": 20,
        "filters": 1000,
        "vocabulary": 200_000,
        "tensor header": offsets[3] - 5,
        "tensor data": offsets[3] + 17,
        "last tensor": size - 1,
    }


@pytest.mark.parametrize(
    "cut", ["empty", "hparams", "filters", "vocabulary", "tensor header", "tensor data", "last tensor"]
)
def test_truncated_file_is_refused_with_a_clear_error(small_ggml, tmp_path, cut):
    path = small_ggml[0]
    keep = _cuts(path)[cut]
    broken = tmp_path / "broken.bin"
    broken.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(GGMLFormatError, match="not a complete whisper.cpp GGML model.*export it again"):
        read_ggml_header(broken)
    manifest = write_manifest(tmp_path / "m.jsonl", fixture_lines()[:1])
    with pytest.raises(GGMLFormatError):
        transcribe_ggml(broken, manifest)  # refused before whisper.cpp reads it


def test_corrupt_fields_are_refused(small_ggml, tmp_path):
    raw = bytearray(small_ggml[0].read_bytes())
    cases = {
        "magic": (0, b"GGUF"),
        "layers": (4 + 4 * 4, struct.pack("<i", 1 << 30)),
        "ftype": (4 + 4 * 10, struct.pack("<i", 7)),
    }
    for what, (at, value) in cases.items():
        bad = bytearray(raw)
        bad[at : at + len(value)] = value
        path = tmp_path / f"{what}.bin"
        path.write_bytes(bytes(bad))
        with pytest.raises(GGMLFormatError):
            read_ggml_header(path)
    assert not is_ggml(tmp_path / "absent.bin") and not is_ggml(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "description", [{}, {"window_policy": {"short": True}}], ids=["10s", "student-windows"]
)
def test_tiny_en_in_whisper_cpp_matches_pytorch(tmp_path, an4_fixture, tiny_teacher, description):
    """tiny.en exported to GGML transcribes the AN4 fixture as the PyTorch model does.

    In a 10 s context floor, and in a student's clip-length windows (2 s and up: whisper.cpp's
    shortened ``audio_ctx``, where its flash-attention path went wrong).
    """
    pytest.importorskip("pywhispercpp", reason="pywhispercpp not installed (the ggml extra)")
    from asr_distill.evaluate.decoding import measure, transcribe
    from asr_distill.metrics import DEFAULT_NORMALISER
    from asr_distill.normalise import get_normaliser
    from asr_distill.student.short_context import evaluation_options

    out = export_ggml(tiny_teacher.model, tmp_path / "tiny.en.bin", description, tokenizer_multilingual=False)
    lines = fixture_lines()
    extra = [
        dict(lines[0], id="missing", audio_filepath=str(tmp_path / "gone.wav")),
        dict(lines[1], id="noref"),
    ]
    extra[1].pop("text")
    manifest = write_manifest(tmp_path / "m.jsonl", lines + extra)
    g = transcribe_ggml(out, manifest, name="tiny.en-ggml")
    p = transcribe(tiny_teacher, manifest, options=evaluation_options(description))
    assert g.model == "tiny.en-ggml" and g.params == p.params == tiny_teacher.n_params
    assert g.skipped == p.skipped == 1 and sorted(g.ids) == sorted(p.ids) and len(g.ids) == 8
    assert g.audio_s == pytest.approx(p.audio_s) and g.wall_s > 0
    norm = get_normaliser(DEFAULT_NORMALISER)
    torch_hyps = dict(zip(p.ids, p.hyps, strict=True))
    pairs = [(h, torch_hyps[i]) for i, h in zip(g.ids, g.hyps, strict=True)]
    assert sum(norm(a) == norm(b) for a, b in pairs) >= 6, pairs
    wer_g, wer_p = measure(g, manifest)[0].score.wer, measure(p, manifest)[0].score.wer
    assert abs(wer_g - wer_p) <= 10.0, (wer_g, wer_p)  # at most about three words of 35 apart
