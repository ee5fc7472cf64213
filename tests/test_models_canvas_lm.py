"""CanvasLM: caches reproduce the uncached forward, masks behave, Auto classes round-trip."""

import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

from dlm_core.models import CanvasConfig, CanvasLM, load_canvas, register_auto_classes, tiny_random_model


def test_causal_cache_matches_full_forward(tiny_ar_model):
    model = tiny_ar_model.model
    ids = torch.randint(0, tiny_ar_model.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    full = model(ids).logits
    prefix = model(ids[:, :10], use_cache=True)
    rest = model(ids[:, 10:], cache=prefix.cache, use_cache=True)
    assert torch.allclose(rest.logits, full[:, 10:], atol=1e-4)
    assert rest.cache[0][0].shape[2] == 24
    one = model(ids[:, 10:11], cache=prefix.cache)
    assert torch.allclose(one.logits, full[:, 10:11], atol=1e-4)


def test_causal_model_does_not_see_the_future(tiny_ar_model):
    model = tiny_ar_model.model
    ids = torch.randint(0, tiny_ar_model.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    changed[0, 12] = (changed[0, 12] + 1) % tiny_ar_model.vocab_size
    assert torch.allclose(model(ids).logits[:, :12], model(changed).logits[:, :12], atol=1e-5)
    assert not torch.allclose(model(ids).logits[:, 12:], model(changed).logits[:, 12:], atol=1e-5)


def test_bidirectional_model_sees_both_sides(tiny_model):
    model = tiny_model.model
    ids = torch.randint(0, tiny_model.vocab_size, (1, 16), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, 12] = (changed[0, 12] + 1) % tiny_model.vocab_size
    assert not torch.allclose(model(ids).logits[:, :12], model(changed).logits[:, :12], atol=1e-5)


def test_dual_cache_with_explicit_positions_matches_full_forward(tiny_model):
    """Fast-dLLM dual cache: a middle block against cached prefix + suffix keys equals the full pass."""
    model = tiny_model.model
    ids = torch.randint(0, tiny_model.vocab_size, (2, 30), generator=torch.Generator().manual_seed(4))
    full = model(ids, use_cache=True)
    outside = list(range(0, 10)) + list(range(20, 30))
    cache = [(k[:, :, outside], v[:, :, outside]) for k, v in full.cache]
    block = model(ids[:, 10:20], position_ids=torch.arange(10, 20).expand(2, -1), cache=cache)
    assert torch.allclose(block.logits, full.logits[:, 10:20], atol=1e-4)


def test_logits_to_keep_projects_only_the_given_positions(tiny_model):
    model = tiny_model.model
    ids = torch.randint(0, tiny_model.vocab_size, (2, 30), generator=torch.Generator().manual_seed(5))
    full = model(ids, use_cache=True)
    keep = torch.tensor([3, 4, 17, 29])
    kept = model(ids, use_cache=True, logits_to_keep=keep)
    assert kept.logits.shape == (2, 4, tiny_model.vocab_size)
    assert torch.allclose(kept.logits, full.logits[:, keep], atol=1e-5)
    for (k, v), (k_full, v_full) in zip(kept.cache, full.cache, strict=True):  # the cache still covers all 30
        assert torch.equal(k, k_full) and torch.equal(v, v_full)
    logits, _ = tiny_model.forward_cached(ids, logits_at=keep)
    assert torch.allclose(logits, full.logits[:, keep].float(), atol=1e-5)


def test_padding_mask_isolates_rows_from_padding(tiny_model):
    model = tiny_model.model
    ids = torch.randint(0, tiny_model.vocab_size, (1, 12), generator=torch.Generator().manual_seed(5))
    padded = torch.cat((ids, torch.zeros(1, 4, dtype=torch.long)), dim=1)
    attention = torch.cat((torch.ones(1, 12), torch.zeros(1, 4)), dim=1)
    out = model(padded, attention_mask=attention).logits
    assert torch.allclose(out[:, :12], model(ids).logits, atol=1e-4)
    assert not out.isnan().any()


def test_adapter_aligns_causal_logits_to_positions(tiny_ar_model):
    ids = torch.randint(0, tiny_ar_model.vocab_size, (1, 8), generator=torch.Generator().manual_seed(6))
    raw = tiny_ar_model.model(ids).logits
    aligned = tiny_ar_model.logits(ids)
    assert torch.allclose(aligned[:, 1:], raw[:, :-1])


def test_tiny_model_is_deterministic_per_seed():
    a, b, c = tiny_random_model(seed=7), tiny_random_model(seed=7), tiny_random_model(seed=8)
    ids = torch.arange(10).unsqueeze(0)
    assert torch.equal(a.logits(ids), b.logits(ids))
    assert not torch.equal(a.logits(ids), c.logits(ids))


def test_save_and_load_through_auto_classes(tmp_path):
    from dlm_core.train import train_tokenizer

    tokenizer = train_tokenizer(["To be, or not to be:\nthat is the question."] * 3, vocab_size=300)
    config = CanvasConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=32, mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id)
    model = CanvasLM(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ids = torch.tensor([[2, 3, 1, 2, 40]])
    register_auto_classes()  # what load_canvas does; plain transformers needs it once per process
    for auto in (AutoModel, AutoModelForMaskedLM, AutoModelForCausalLM):
        loaded = auto.from_pretrained(tmp_path)
        assert isinstance(loaded, CanvasLM)
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
    adapter = load_canvas(tmp_path, name="toy")
    assert (adapter.mask_id, adapter.eos_ids, adapter.max_length, adapter.kind) == (1, (0,), 32, "diffusion")
    text = "To be, or not:\n that is the question ?"
    assert adapter.decode(adapter.encode(text)) == text
    assert "".join(adapter.token_text(i) for i in adapter.encode(text)) == text
