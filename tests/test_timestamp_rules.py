"""The batched timestamp rules mask exactly what openai-whisper's per-row rules mask."""

from __future__ import annotations

import pytest
import torch
from whisper.decoding import ApplyTimestampRules
from whisper.tokenizer import get_tokenizer

from asr_distill.teacher.timestamp_rules import BatchedTimestampRules, batched

TOK = get_tokenizer(multilingual=False)  # tiny.en's: timestamp tokens from 50364, end 50256
BEGIN, EOT = TOK.timestamp_begin, TOK.eot
SAMPLE_BEGIN = 3
VOCAB = BEGIN + 1501


def _ts(seconds: float) -> int:
    return BEGIN + round(seconds / 0.02)


# rows after the prompt: (what each case shows, the sampled tokens)
ROWS = {
    "nothing yet": [],
    "one opening timestamp": [_ts(0.0)],
    "a closed pair": [_ts(0.0), 300, 400, _ts(1.2), _ts(1.2)],
    "text after a timestamp": [_ts(0.4), 300, 400],
    "a lone closing timestamp": [_ts(0.0), 300, _ts(2.0)],
    "no timestamps at all": [300, 301, 302],
    "an ended row": [_ts(0.0), 300, _ts(1.0), EOT],
}


def _both(rows: list[list[int]], seed: int, max_initial: int | None = 50):
    """The logits after whisper's rules and after the batched ones, for the same input."""
    width = max(len(r) for r in rows)
    assert all(len(r) == width for r in rows), "a batch's rows have one length"
    prompt = [TOK.sot, TOK.sot_prev, TOK.sot_lm][:SAMPLE_BEGIN]
    tokens = torch.tensor([prompt + r for r in rows])
    logits = torch.randn(len(rows), VOCAB, generator=torch.Generator().manual_seed(seed)) * 3
    # make timestamps win in some rows, so the "timestamp beats text" rule is exercised too
    logits[::2, BEGIN:] += 4
    rule = ApplyTimestampRules(TOK, SAMPLE_BEGIN, max_initial)
    expected, got = logits.clone(), logits.clone()
    rule.apply(expected, tokens)
    BatchedTimestampRules(rule).apply(got, tokens)
    return expected, got


@pytest.mark.parametrize("name", [n for n in ROWS if ROWS[n]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_constructed_row_is_masked_as_whisper_masks_it(name, seed):
    expected, got = _both([ROWS[name]], seed)
    assert torch.equal(torch.isinf(expected), torch.isinf(got)), name
    assert torch.equal(expected, got)


@pytest.mark.parametrize("max_initial", [None, 0, 50])
def test_the_first_step_allows_only_early_timestamps(max_initial):
    expected, got = _both([[], [], []], 3, max_initial)
    assert torch.equal(expected, got)
    assert torch.isinf(got[:, :BEGIN]).all()


@pytest.mark.parametrize("seed", range(5))
def test_a_mixed_batch_of_random_rows_matches(seed):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(16):  # random mixes of text and (non-decreasing) timestamps, length 6
        t, row = 0.0, []
        for _ in range(6):
            if torch.rand(1, generator=g) < 0.4:
                t += float(torch.randint(0, 20, (1,), generator=g)) * 0.02
                row.append(_ts(t))
            else:
                row.append(int(torch.randint(0, 5000, (1,), generator=g)))
        rows.append(row)
    expected, got = _both(rows, seed)
    assert torch.equal(expected, got)


def test_only_the_timestamp_rule_is_swapped():
    rule, other = ApplyTimestampRules(TOK, SAMPLE_BEGIN, None), object()
    out = batched([other, rule])
    assert out[0] is other and isinstance(out[1], BatchedTimestampRules)
