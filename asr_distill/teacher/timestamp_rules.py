"""Whisper's timestamp rules for a whole batch at once, as tensor operations.

openai-whisper's ``ApplyTimestampRules`` enforces its timestamp grammar one row at a time in
Python (two loops over the batch per decoding step, a ``tolist`` and a ``logsumexp`` per
row). On a GPU at batch 256 that loop was half of the labeler's time (profiled on an H200,
``benchmarks/NOTES.md``, label_throughput_gpu). The rules here are the same, applied to
every row together, so the step costs a few kernels whatever the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from whisper.decoding import ApplyTimestampRules, LogitFilter


class BatchedTimestampRules(LogitFilter):
    """The rules of ``whisper.decoding.ApplyTimestampRules`` on all rows at once.

    Per row: timestamps come in pairs (after a pair, text; after a lone timestamp, another
    timestamp or the end), never decrease, and a segment is never empty; the first token is a
    timestamp no later than ``max_initial_timestamp_index``; and when the timestamps together
    are more likely than any text token, a timestamp is emitted.
    """

    def __init__(self, rule: ApplyTimestampRules):
        self.tokenizer = rule.tokenizer
        self.sample_begin = rule.sample_begin
        self.max_initial_timestamp_index = rule.max_initial_timestamp_index

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        """Mask ``logits`` ``(B, V)`` in place for the next token after ``tokens`` ``(B, L)``."""
        tok = self.tokenizer
        begin, eot = tok.timestamp_begin, tok.eot
        if tok.no_timestamps is not None:
            logits[:, tok.no_timestamps] = -torch.inf
        sampled = tokens[:, self.sample_begin :]
        n = sampled.shape[1]
        if n:
            self._pairs_and_order(logits, sampled, begin, eot)
        if tokens.shape[1] == self.sample_begin:  # the first token: a timestamp, not too late
            logits[:, :begin] = -torch.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = -torch.inf
        logprobs = F.log_softmax(logits.float(), dim=-1)
        timestamp_wins = logprobs[:, begin:].logsumexp(-1) > logprobs[:, :begin].max(-1).values
        logits[timestamp_wins, :begin] = -torch.inf

    @staticmethod
    def _pairs_and_order(logits: torch.Tensor, sampled: torch.Tensor, begin: int, eot: int) -> None:
        """Pairing, non-decreasing timestamps and non-empty segments, for rows with tokens."""
        is_ts = sampled >= begin
        last_ts = is_ts[:, -1]
        penultimate_ts = is_ts[:, -2] if sampled.shape[1] >= 2 else torch.ones_like(last_ts)
        lone = last_ts & ~penultimate_ts  # a segment is open: its closing timestamp or the end
        logits[last_ts & penultimate_ts, begin:] = -torch.inf
        logits[lone, :eot] = -torch.inf
        # the last timestamp of each row (by position); rows with none are left alone
        positions = torch.arange(sampled.shape[1], device=sampled.device).expand_as(sampled)
        where = torch.where(is_ts, positions, -1).amax(-1)
        has = where >= 0
        last = sampled.gather(1, where.clamp(min=0)[:, None])[:, 0]
        bound = torch.where(lone, last, last + 1)  # timestamps below this are forbidden
        columns = torch.arange(logits.shape[1], device=logits.device)
        forbid = has[:, None] & (columns >= begin) & (columns < bound[:, None])
        logits.masked_fill_(forbid, -torch.inf)


def batched(filters: list[LogitFilter]) -> list[LogitFilter]:
    """``filters`` with whisper's per-row ``ApplyTimestampRules`` swapped for the batched one."""
    return [BatchedTimestampRules(f) if isinstance(f, ApplyTimestampRules) else f for f in filters]


__all__ = ["BatchedTimestampRules", "batched"]
