"""sampler.sampling: Gumbel-max restricted to some rows draws the same stream and the same samples there."""

import torch

from dlm_core.sampler.sampling import gumbel_argmax, truncate, truncates


def test_gumbel_argmax_where_matches_the_full_draw_on_its_rows_and_consumes_the_same_stream():
    logits = torch.randn(3, 7, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    where = torch.rand(3, 7, generator=torch.Generator().manual_seed(2)) < 0.5
    for temperature in (0.5, 1.0, 1.7):
        full_gen, part_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        full = gumbel_argmax(logits, temperature, full_gen)
        part = gumbel_argmax(logits, temperature, part_gen, where=where)
        assert torch.equal(part[where], full[where])
        assert torch.equal(part[~where], logits.argmax(-1)[~where])
        assert torch.equal(full_gen.get_state(), part_gen.get_state())  # the next draw is the same either way
    assert not torch.equal(full, logits.argmax(-1))  # sampling happened (the check above can fail)


def test_truncate_is_a_no_op_exactly_when_truncates_says_so():
    logits = torch.randn(2, 30, dtype=torch.float64)
    for top_k, top_p in ((None, None), (None, 1.0), (5, None), (None, 0.5), (3, 0.9)):
        kept = torch.isfinite(truncate(logits, 1.0, top_k, top_p)).sum().item()
        assert (kept < logits.numel()) == truncates(top_k, top_p)
