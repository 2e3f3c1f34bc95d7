"""GPU batching: ``batch_size="auto"`` sized from free memory, and the reduced-precision decoder.

No GPU runs here: the sizing rule is a function of the model's dimensions and a free-memory
figure, and the float16 decoder the GPU path uses runs on the CPU too (slowly), so both are
checked where CI runs. The GPU figures are in ``benchmarks/results/label_throughput_gpu.json``.
"""

from __future__ import annotations

import pytest
import torch
from whisper.model import ModelDimensions

from asr_distill.label import LabelRun, label, label_batches
from asr_distill.records import TeacherLabel
from asr_distill.teacher import batching
from asr_distill.teacher.backends import make_backend, reduced_copy
from asr_distill.teacher.options import DEFAULT_BATCH_SIZE, parse_batch_size

GIB = 1 << 30
# openai-whisper's published dimensions
BASE = ModelDimensions(80, 1500, 512, 8, 6, 51865, 448, 512, 8, 6)
LARGE_V3 = ModelDimensions(128, 1500, 1280, 20, 32, 51866, 448, 1280, 20, 32)


def test_auto_batch_grows_with_free_memory_and_shrinks_with_the_model():
    base_small = batching.auto_batch_size(BASE, 4 * GIB, 2)
    base_big = batching.auto_batch_size(BASE, 16 * GIB, 2)
    assert 1 < base_small < base_big <= batching.MAX_AUTO_BATCH
    large = batching.auto_batch_size(LARGE_V3, 16 * GIB, 2)
    assert 1 <= large < base_big
    # float32 values take twice the memory of float16 ones
    assert batching.auto_batch_size(LARGE_V3, 16 * GIB, 4) < large
    # a large-v3 clip in a 30 s window: its cross-attention cache alone is 2 x 32 x 1500 x 1280 values
    assert batching.clip_bytes(LARGE_V3, 2) > 2 * 32 * 1500 * 1280 * 2 * batching.KV_COPIES


def test_auto_batch_never_falls_below_one_nor_passes_the_cap():
    assert batching.auto_batch_size(LARGE_V3, 1 << 20, 2) == 1
    assert batching.auto_batch_size(BASE, 1 << 40, 2) == batching.MAX_AUTO_BATCH


def test_auto_on_a_cpu_is_the_measured_cpu_size(tiny_teacher):
    assert make_backend(tiny_teacher, "whisper", "fp32").auto_batch_size() == DEFAULT_BATCH_SIZE
    assert batching.resolve_batch_size(3, tiny_teacher.model, None) == 3


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("12", 12)])
def test_the_command_line_takes_auto_or_a_number(text, value):
    assert parse_batch_size(text) == value


@pytest.mark.parametrize("bad", ["0", "-2", "big"])
def test_a_bad_batch_size_is_refused(bad):
    with pytest.raises(ValueError):
        parse_batch_size(bad)
    with pytest.raises(ValueError):
        LabelRun(batch_size=bad)


def test_reduced_copy_keeps_layer_norms_in_float32_and_leaves_the_teacher_alone(tiny_teacher):
    half = reduced_copy(tiny_teacher.model, torch.float16)
    norms = [m for m in half.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    assert half.encoder.positional_embedding.dtype == torch.float16
    assert half.decoder.token_embedding.weight.dtype == torch.float16
    assert next(tiny_teacher.model.parameters()).dtype == torch.float32


def test_a_float16_decoder_writes_what_float32_writes(an4_fixture, tiny_teacher):
    """The GPU path (weights and features in float16 throughout), run on the CPU."""
    ref = {r.id: r.text for r in label(an4_fixture, LabelRun(tiny_teacher, batch_size=4, precision="fp32"))}
    engine = make_backend(tiny_teacher, "whisper", "fp16")
    engine.decodes_reduced, engine.model = True, reduced_copy(tiny_teacher.model, torch.float16)
    out = {}
    for labels, skips in label_batches(an4_fixture, LabelRun(tiny_teacher, batch_size=4), engine=engine):
        assert not skips
        out.update({r.id: r.text for r in labels if isinstance(r, TeacherLabel)})
    assert out.keys() == ref.keys()
    same = sum(out[k] == ref[k] for k in ref)
    assert same >= len(ref) - 1, {k: (ref[k], out[k]) for k in ref if out[k] != ref[k]}


def test_evaluate_takes_auto_and_refuses_a_bad_size():
    from asr_distill.evaluate import Decoding

    assert Decoding().batch_size == "auto"
    with pytest.raises(ValueError):
        Decoding(batch_size=0)
