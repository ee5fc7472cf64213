"""KV-cached autoregressive decoding: same tokens as the uncached left-to-right sampler, one NFE per token."""

import numpy as np
import pytest

from dlm_core.sampler import ConfigError, PromptError, SamplerConfig, run_to_end
from dlm_core.sampler.autoregressive import decode_autoregressive, decode_autoregressive_batch


@pytest.mark.parametrize("prompt", ["Hello", "Hello [MASK:3] world", "x[MASK]x"])
def test_greedy_cached_decoding_matches_uncached_left_to_right(tiny_ar_model, prompt):
    config = SamplerConfig(gen_length=20, strategy="left_to_right")
    states = list(decode_autoregressive(tiny_ar_model, prompt, config))
    reference = run_to_end(tiny_ar_model, prompt, config)
    assert np.array_equal(states[-1].tokens, reference.tokens)
    slots = int((~states[-1].fixed).sum())
    assert len(states) == slots + 1 and states[-1].nfe == slots
    committed = [int(s.committed[0]) for s in states[1:]]
    assert committed == sorted(committed) and len(set(committed)) == slots  # strictly in reading order
    assert all(s.masked.sum() == slots - i for i, s in enumerate(states))


def test_sampling_is_seeded_and_private(tiny_ar_model):
    config = SamplerConfig(gen_length=30, strategy="left_to_right", temperature=1.0, top_k=20, seed=5)
    a = list(decode_autoregressive(tiny_ar_model, "Hi", config))[-1]
    b = list(decode_autoregressive(tiny_ar_model, "Hi", config))[-1]
    c = list(decode_autoregressive(tiny_ar_model, "Hi", config.replace(seed=6)))[-1]
    assert np.array_equal(a.tokens, b.tokens) and not np.array_equal(a.tokens, c.tokens)
    assert np.nanmax(a.confidence) <= 1.0


def test_batch_rows_equal_lone_runs(tiny_ar_model):
    config = SamplerConfig(gen_length=8, strategy="left_to_right")
    batch = list(decode_autoregressive_batch(tiny_ar_model, ["Hi", "Hello there"], config))[-1]
    for prompt, state in zip(["Hi", "Hello there"], batch, strict=True):
        alone = list(decode_autoregressive(tiny_ar_model, prompt, config))[-1]
        assert np.array_equal(state.tokens, alone.tokens)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"strategy": "low_confidence"}, "strategy"), ({"cfg_scale": 1.0}, "cfg_scale"), ({"steps": 8}, "steps")],
)
def test_settings_an_ar_model_cannot_honour_are_refused(tiny_ar_model, changes, field):
    config = SamplerConfig(**{"gen_length": 8, "strategy": "left_to_right", **changes})
    with pytest.raises(ConfigError) as error:
        decode_autoregressive(tiny_ar_model, "Hi [MASK]", config)
    assert error.value.field == field


def test_a_prompt_starting_with_a_mask_is_refused(tiny_ar_model):
    with pytest.raises(PromptError, match="must not start with"):
        decode_autoregressive(tiny_ar_model, "[MASK] hi", SamplerConfig(gen_length=4, strategy="left_to_right"))
