"""The openai-whisper internals this package leans on are still there, with the same shapes.

``teacher/backends.py`` subclasses whisper's private ``DecodingTask`` (``_FeaturesTask``), and
other modules read private or undocumented names (``whisper._MODELS``, the encoder's layers).
pyproject.toml pins openai-whisper to one release; when a new one is allowed, these tests say
what moved, by name, before a labeling run silently decodes differently.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect

import pytest
import torch
import whisper
from whisper.decoding import DecodingOptions, DecodingResult, DecodingTask
from whisper.model import ModelDimensions, Whisper
from whisper.tokenizer import get_tokenizer

VERSION = importlib.metadata.version("openai-whisper")
WHO = {
    "DecodingTask": "teacher/backends.py _FeaturesTask",
    "Whisper": "features.encode_mels, student/module.py greedy_decode",
    "whisper": "teacher/resolve.py, features.py",
}


def _moved(owner: str, what: str) -> str:
    return f"openai-whisper {VERSION}: {owner}.{what} moved or changed; {WHO[owner]} relies on it"


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize(
    "method, params",
    [
        ("__init__", ["model", "options"]),
        ("_get_audio_features", ["mel"]),
        ("_detect_language", ["audio_features", "tokens"]),
        ("_main_loop", ["audio_features", "tokens"]),
        ("run", ["mel"]),
    ],
)
def test_decoding_task_methods_we_override_or_call(method, params):
    assert hasattr(DecodingTask, method), _moved("DecodingTask", method)
    assert _params(getattr(DecodingTask, method)) == params, _moved("DecodingTask", f"{method}{params}")


@pytest.mark.parametrize("call", ["self._get_audio_features(", "self._detect_language(", "self._main_loop("])
def test_decoding_task_run_still_goes_through_our_overrides(call):
    """An override that ``run`` no longer calls would be skipped without an error."""
    assert call in inspect.getsource(DecodingTask.run), _moved("DecodingTask", f"run -> {call[5:-1]}")


def test_main_loop_still_calls_inference_logits():
    """``_FeaturesTask`` calls ``self.inference.logits`` in its greedy loop, and wraps it in Whisper's own."""
    assert "self.inference.logits(" in inspect.getsource(DecodingTask._main_loop), _moved(
        "DecodingTask", "_main_loop -> inference.logits"
    )


def _tiny_whisper() -> Whisper:
    """A random English-only Whisper small enough to build in milliseconds."""
    torch.manual_seed(0)
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=50,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=51864,
        n_text_ctx=64,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=1,
    )
    model = Whisper(dims).eval()
    with torch.no_grad():
        for p in model.parameters():  # some are torch.empty: whisper expects a checkpoint to fill them
            p.normal_(0.0, 0.02)
    return model


def test_decoding_task_instance_attributes():
    task = DecodingTask(_tiny_whisper(), DecodingOptions(language="en", beam_size=2, fp16=False))
    attrs = ("n_group", "sot_index", "inference", "initial_tokens", "sample_begin", "sample_len", "n_ctx")
    for attr in (*attrs, "logit_filters", "decoder", "tokenizer"):  # the greedy loop's, as well
        assert hasattr(task, attr), _moved("DecodingTask", attr)
    for attr in ("kv_cache", "cleanup_caching"):
        assert hasattr(task.inference, attr), _moved("DecodingTask", f"inference.{attr}")
    assert _params(task.decoder.update) == ["tokens", "logits", "sum_logprobs"], _moved(
        "DecodingTask", "decoder.update(tokens, logits, sum_logprobs)"
    )
    assert task.n_group == 2, _moved("DecodingTask", "n_group (rows per clip)")
    assert callable(getattr(task.inference, "logits", None)), _moved("DecodingTask", "inference.logits")


@pytest.mark.parametrize(
    "field",
    ["task", "language", "temperature", "sample_len", "best_of", "beam_size", "without_timestamps", "fp16"],
)
def test_decoding_options_fields(field):
    assert field in {f.name for f in dataclasses.fields(DecodingOptions)}, _moved("DecodingOptions", field)


@pytest.mark.parametrize("field", ["tokens", "text", "no_speech_prob"])
def test_decoding_result_fields(field):
    assert field in {f.name for f in dataclasses.fields(DecodingResult)}, _moved("DecodingResult", field)


def test_model_parts_we_run_by_hand():
    model = _tiny_whisper()
    for attr in ("conv1", "conv2", "positional_embedding", "blocks", "ln_post"):
        assert hasattr(model.encoder, attr), _moved("Whisper", f"encoder.{attr}")
    for attr in ("install_kv_cache_hooks", "logits", "is_multilingual", "num_languages"):
        assert hasattr(model, attr), _moved("Whisper", attr)
    assert _params(model.decoder.forward)[:3] == ["x", "xa", "kv_cache"], _moved("Whisper", "decoder.forward")


def test_module_level_names():
    for name in ("_MODELS", "available_models", "load_model", "log_mel_spectrogram", "pad_or_trim"):
        assert hasattr(whisper, name), _moved("whisper", name)
    assert whisper.audio.SAMPLE_RATE == 16000 and whisper.audio.HOP_LENGTH == 160, _moved("whisper", "audio")
    assert "download_root" in _params(whisper.load_model), _moved("whisper", "load_model(download_root=)")
    tok = get_tokenizer(False, num_languages=99, language="en", task="transcribe")
    for attr in (
        "sot",
        "eot",
        "sot_sequence",
        "sot_sequence_including_notimestamps",
        "timestamp_begin",
        "all_language_tokens",
        "all_language_codes",
    ):
        assert hasattr(tok, attr), _moved("whisper", f"tokenizer.Tokenizer.{attr}")


@pytest.mark.parametrize("beam_size", [None, 2])
def test_features_task_decodes_with_the_installed_whisper(beam_size):
    """Our subclass end to end on a random model, greedy and beam.

    Greedy reads the statistics in the loop; beam repeats rows per clip and scores them by
    teacher forcing.
    """
    from asr_distill.teacher.backends import WhisperBackend
    from asr_distill.teacher.options import DecodePass
    from asr_distill.teacher.resolve import Teacher

    backend = WhisperBackend(Teacher("random", _tiny_whisper(), "0" * 64, "test"), precision="fp32")
    features = torch.randn(2, 50, 64)
    hyps = backend.generate(features, DecodePass("en", beam_size=beam_size, max_tokens=4))
    assert len(hyps) == 2
    for h in hyps:
        assert len(h.token_stats) == len(h.tokens) <= 4
        assert h.avg_logprob <= 0 and 0 <= h.no_speech_prob <= 1
