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
