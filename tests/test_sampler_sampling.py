"""sampler.sampling: Gumbel-max restricted to some rows draws the same stream and the same samples there;
the threshold form of top-p keeps the set the sort-and-scatter definition keeps."""

import torch

from dlm_core.sampler.sampling import gumbel_argmax, nucleus, truncate, truncates


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


def sorted_nucleus(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p as Dream's generation code writes it: sort, softmax, cumulative sum, keep the crossing token."""
    ordered, order = scaled.sort(dim=-1, descending=True)
    drop = ordered.softmax(-1).cumsum(-1) > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    return ~torch.zeros_like(drop).scatter_(-1, order, drop)


def test_nucleus_keeps_the_set_of_the_sort_and_scatter_definition():
    generator = torch.Generator().manual_seed(7)
    checked = 0
    for vocab in (2, 3, 17, 500, 4096):
        for spread in (0.1, 1.0, 4.0, 12.0):  # near-uniform rows (wide nuclei) to peaked ones (one token)
            logits = torch.randn(6, vocab, generator=generator, dtype=torch.float64) * spread
            for top_p in (0.01, 0.3, 0.9, 0.95, 0.999):
                ours, reference = nucleus(logits, top_p), sorted_nucleus(logits, top_p)
                assert torch.equal(ours, reference), (vocab, spread, top_p)
                checked += int(ours.sum())
    assert checked > 6 * 5 * 4 * 5  # the sets were not all single tokens


def test_nucleus_keeps_every_token_tied_with_the_crossing_one():
    logits = torch.log(torch.tensor([[0.4, 0.2, 0.2, 0.2]], dtype=torch.float64))
    # 0.4 + 0.2 crosses 0.5 at a tie: the sort form keeps one of the three 0.2s, this form all of them.
    assert nucleus(logits, 0.5).tolist() == [[True, True, True, True]]
    assert nucleus(logits, 0.3).tolist() == [[True, False, False, False]]
