"""Fast-dLLM caches: exact when the cache is fresh, refreshed at block boundaries, honest fallbacks."""

import numpy as np
import pytest
import torch

from dlm_core.models import tiny_random_model
from dlm_core.sampler import SamplerConfig, denoise, denoise_batch, loop, run_to_end
from dlm_core.sampler.cache import CachedForward


def final(states):
    last = None
    for last in states:  # noqa: B007
        pass
    return last


@pytest.fixture
def cached_forwards(monkeypatch):
    """Every ``CachedForward`` that ``denoise`` builds from ``config.cache``, to read its refresh count."""
    made = []

    class Recorded(CachedForward):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(loop, "CachedForward", Recorded)  # the loop module builds the cache
    return made


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_one_token_blocks_make_every_step_a_refresh_so_the_result_is_exact(tiny_model, mode, cached_forwards):
    """With block_length 1 each step starts a new block: the cache is always fresh (exact logits)."""
    config = SamplerConfig(gen_length=12, block_length=1, strategy="low_confidence", temperature=0.8, seed=4)
    cached = final(denoise(tiny_model, "To be", config.replace(cache=mode)))
    assert np.array_equal(cached.tokens, run_to_end(tiny_model, "To be", config).tokens)
    [forward] = cached_forwards
    assert forward.mode == mode and forward.refreshes == 12


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cache_refreshes_once_per_block_and_costs_one_nfe_per_step(tiny_model, mode, cached_forwards):
    config = SamplerConfig(gen_length=24, steps=12, block_length=8, strategy="low_confidence")
    states = list(denoise(tiny_model, "Hello", config.replace(cache=mode)))
    [forward] = cached_forwards
    assert forward.refreshes == 3
    assert states[-1].nfe == 12 and not states[-1].masked.any()
    # The first step of a block is a full forward, so it matches the uncached run's first step exactly.
    uncached = list(denoise(tiny_model, "Hello", config))
    assert len(cached_forwards) == 1  # the uncached run built none
    assert np.array_equal(states[1].tokens, uncached[1].tokens)


def test_cached_logits_inside_a_block_use_stale_outside_keys(tiny_model):
    """Mid-block steps differ from a full forward only through the cached keys/values (the approximation)."""
    forward = CachedForward(tiny_model, "dual")
    x = torch.randint(0, 90, (1, 20), generator=torch.Generator().manual_seed(0))
    window = torch.arange(8, 12).unsqueeze(0)
    fixed = torch.zeros_like(x, dtype=torch.bool)
    first = forward(x, None, fixed, window)
    assert torch.allclose(first, tiny_model.logits(x)[:, 8:12], atol=1e-5)
    changed = x.clone()
    changed[0, 9] = (changed[0, 9] + 1) % 90  # a token inside the block changes: recomputed part follows
    second = forward(changed, None, fixed, window)
    exact = tiny_model.logits(changed)[:, 8:12]
    assert forward.refreshes == 1
    assert not torch.allclose(second, first, atol=1e-5)
    assert not torch.allclose(second, exact, atol=1e-6)  # stale prefix/suffix keys: not exact
    assert torch.allclose(second.softmax(-1), exact.softmax(-1), atol=0.5)


def test_padded_batches_fall_back_to_the_exact_full_forward(tiny_model, cached_forwards):
    config = SamplerConfig(gen_length=6, block_length=3, strategy="low_confidence")
    prompts = ["Hi", "Hello there"]
    cached = final(denoise_batch(tiny_model, prompts, config.replace(cache="dual")))
    plain = final(denoise_batch(tiny_model, prompts, config))
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(cached, plain, strict=True))
    [forward] = cached_forwards
    assert forward.refreshes == 0


def test_models_without_cache_support_are_refused_clearly(tiny_model):
    class NoCache:
        name = "plain"

    with pytest.raises(ValueError, match="does not support key/value caching"):
        CachedForward(NoCache(), "prefix")
    with pytest.raises(ValueError, match="cache must be one of prefix, dual"):
        CachedForward(tiny_random_model(), "full")


def test_config_cache_field_selects_the_cached_forward(tiny_model, cached_forwards):
    """``config.cache`` is the one switch: it builds the cache of that mode, refreshed once per block."""
    config = SamplerConfig(gen_length=16, steps=8, block_length=4, strategy="threshold", threshold=0.5)
    assert final(denoise(tiny_model, "Hi", config)) is not None and cached_forwards == []
    via_config = final(denoise(tiny_model, "Hi", config.replace(cache="dual")))
    [forward] = cached_forwards
    assert forward.mode == "dual" and forward.refreshes == 4  # one per block
    assert not via_config.masked.any() and via_config.nfe <= 8


def test_a_model_without_a_cache_is_a_config_error_naming_cache():
    from dlm_core.sampler import ConfigError

    class Plain:
        name, kind, supports_cache = "plain", "diffusion", False

    with pytest.raises(ConfigError, match="does not support key/value caching") as error:
        denoise(Plain(), "Hi", SamplerConfig(gen_length=4, cache="prefix"))
    assert error.value.field == "cache"


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"cache": "full"}, "cache must be None or one of prefix, dual"), ({"cache": "dual", "cfg_scale": 1.0}, "cfg_scale")],
)
def test_bad_cache_settings_name_the_field(changes, message):
    from dlm_core.sampler import ConfigError

    with pytest.raises(ConfigError, match=message) as error:
        SamplerConfig(**changes)
    assert error.value.field == "cache"


def test_autoregressive_models_refuse_the_diffusion_cache(tiny_ar_model):
    from dlm_core.sampler import ConfigError

    with pytest.raises(ConfigError, match="always uses its exact KV cache"):
        denoise(tiny_ar_model, "Hi", SamplerConfig(gen_length=4, strategy="left_to_right", cache="prefix"))


# -- the window cache: finished blocks computed once, far masks dropped (DPad) ---------------------


class QueryCounter:
    """Wraps a model and records how many positions each cached forward computes."""

    def __init__(self, model):
        self.model, self.queries = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def forward_cached(self, input_ids, cache=None, position_ids=None, logits_at=None):
        self.queries.append(input_ids.shape[1])
        return self.model.forward_cached(input_ids, cache, position_ids, logits_at)


def test_window_cache_computes_each_finished_block_once_and_only_the_nearby_masks(tiny_model):
    counter = QueryCounter(tiny_model)
    prompt_length = len(tiny_model.encode("Hello"))
    config = SamplerConfig(gen_length=64, steps=16, block_length=16, strategy="low_confidence", cache="window",
                           suffix_window=8)
    state = run_to_end(counter, "Hello", config)
    assert not state.masked.any() and state.nfe == 16
    # Per block: a first step (the slots finished since the last block + the block + 8 masks), then the block alone.
    first = [prompt_length + 16 + 8, 16 + 16 + 8, 16 + 16 + 8, 16 + 16]
    assert counter.queries == [n for block in first for n in (block, 16, 16, 16)]


def test_window_cache_first_step_is_exact_on_the_canvas_without_far_masks(tiny_model):
    """The far [MASK] slots are left out; text after the block (infilling) still counts, at its own position."""
    mask = tiny_model.mask_id
    x = torch.randint(3, 60, (1, 40), generator=torch.Generator().manual_seed(1))
    x[0, 8:36] = mask
    x[0, 38] = mask  # a far mask between two words of text after the block
    forward = CachedForward(tiny_model, "window", suffix_window=4)
    window = torch.arange(8, 16).unsqueeze(0)
    logits = forward(x, None, torch.zeros_like(x, dtype=torch.bool), window)
    kept = torch.tensor([*range(0, 20), 36, 37, 39])
    exact, _ = tiny_model.forward_cached(x[:, kept], None, kept.unsqueeze(0), logits_at=torch.arange(8, 16))
    assert torch.allclose(logits, exact, atol=1e-5)
    everything = tiny_model.logits(x)[:, 8:16]
    assert not torch.allclose(logits, everything, atol=1e-4)  # the dropped masks did matter a little


def test_window_cache_never_recomputes_a_finished_block(tiny_model):
    """Stale by design: a finished block's keys/values are those of its tokens when the next block began."""
    x = torch.randint(3, 60, (1, 32), generator=torch.Generator().manual_seed(2))
    x[0, 16:] = tiny_model.mask_id
    fixed = torch.zeros_like(x, dtype=torch.bool)
    changed = x.clone()
    changed[0, 3] = (changed[0, 3] + 1) % 60  # a finished slot changes after it was cached
    results = {}
    for mode in ("window", "dual"):
        logits = []
        for canvas in (x, changed):
            forward = CachedForward(tiny_model, mode, suffix_window=8)
            forward(x, None, fixed, torch.arange(8, 16).unsqueeze(0))  # block 1 starts: slots 0..7 are finished
            logits.append(forward(canvas, None, fixed, torch.arange(16, 24).unsqueeze(0)))  # block 2 starts
        results[mode] = logits[1] - logits[0]
    assert torch.count_nonzero(results["dual"]) > 0  # the dual cache recomputes the whole canvas per block
    assert torch.count_nonzero(results["window"]) == 0  # the window cache computed slot 3 once, at block 1


def test_window_cache_in_one_block_is_the_dual_cache(tiny_model):
    config = SamplerConfig(gen_length=24, steps=8, strategy="low_confidence", temperature=0.7, seed=3,
                           suffix_window=0)
    window = run_to_end(tiny_model, "To be", config.replace(cache="window"))
    dual = run_to_end(tiny_model, "To be", config.replace(cache="dual"))
    assert np.array_equal(window.tokens, dual.tokens)
