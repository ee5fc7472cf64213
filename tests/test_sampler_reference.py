"""Reference checks: the sampler reproduces, token for token, straightforward re-implementations of
LLaDA's generate(), Dream's _sample, Fast-dLLM's threshold decoding and greedy AR decoding.

The reference loops below are written from the papers' published algorithms with plain Python
loops and their own random draws. Two documented conventions of ours are mirrored on purpose:
the mask token's logit is set to -inf (a masked LM never proposes [MASK]), and the RNG draw order
(``dlm_core.sampler.denoise`` module docstring): per step, Gumbel uniforms of shape
(1, block, vocab) in float64 when T > 0, then, for ``random``, uniforms of shape (1, block) in float64.
"""

import pytest
import torch
import torch.nn.functional as F

from dlm_core.models import tiny_random_model
from dlm_core.sampler import SamplerConfig, denoise, encode_prompt

MODEL = tiny_random_model(seed=0)
AR_MODEL = tiny_random_model(seed=0, causal=True)
MASK = MODEL.mask_id
PROMPT = "The quick brown fox"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trajectory_tokens(prompt, config, model=MODEL):
    states = list(denoise(model, prompt, config))
    return [state.tokens.tolist() for state in states[1:]], states


# -- LLaDA generate() ---------------------------------------------------------------------------------


def llada_generate(prompt_ids, steps, gen_length, block_length, temperature, cfg_scale, remasking, seed):
    """LLaDA's Algorithm (generate.py) with plain loops; returns the canvas after every step."""
    generator = torch.Generator().manual_seed(seed)
    prompt_len = len(prompt_ids)
    x = torch.full((1, prompt_len + gen_length), MASK, dtype=torch.long)
    x[0, :prompt_len] = torch.tensor(prompt_ids)
    prompt_index = x != MASK
    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0
    steps_per_block = steps // num_blocks
    history = []
    for block in range(num_blocks):
        start = prompt_len + block * block_length
        end = start + block_length
        masked_in_block = int((x[0, start:end] == MASK).sum())
        counts = []
        for i in range(steps_per_block):  # get_num_transfer_tokens: base, +1 for the first remainder steps
            counts.append(masked_in_block // steps_per_block + (1 if i < masked_in_block % steps_per_block else 0))
        for i in range(steps_per_block):
            mask_index = x == MASK
            if cfg_scale > 0:
                un_x = x.clone()
                un_x[prompt_index] = MASK
                both = MODEL.logits(torch.cat([x, un_x], dim=0))
                cond, uncond = both[:1], both[1:]
                logits = uncond + (cfg_scale + 1) * (cond - uncond)
            else:
                logits = MODEL.logits(x)
            logits = logits[:, start:end].to(torch.float64)
            logits[..., MASK] = float("-inf")
            if temperature > 0:  # add_gumbel_noise in float64: exp(logits) / (-log U)^T
                noise = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
                x0 = (logits.exp() / (-torch.log(noise)) ** temperature).argmax(-1)
            else:
                x0 = logits.argmax(-1)
            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)
                x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            else:
                x0_p = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
            confidence = torch.where(mask_index[:, start:end], x0_p, torch.tensor(float("-inf"), dtype=torch.float64))
            _, select = torch.topk(confidence[0], k=counts[i])
            for j in select.tolist():
                x[0, start + j] = x0[0, j]
            history.append(x[0].tolist())
    return history


@pytest.mark.parametrize(
    ("remasking", "gen_length", "block_length", "steps", "temperature", "cfg_scale", "seed"),
    [
        ("low_confidence", 16, 16, 16, 0.0, 0.0, 0),
        ("low_confidence", 16, 16, 6, 0.0, 0.0, 0),  # 16 over 6 steps: 3,3,3,3,2,2
        ("low_confidence", 24, 8, 9, 0.0, 0.0, 0),  # 3 blocks of 8, 3 steps each
        ("low_confidence", 24, 8, 12, 0.9, 0.0, 3),
        ("low_confidence", 16, 4, 8, 0.5, 1.5, 5),  # with classifier-free guidance
        ("random", 16, 16, 8, 0.0, 0.0, 1),
        ("random", 24, 8, 12, 1.2, 0.0, 2),
    ],
)
def test_matches_llada_generate(remasking, gen_length, block_length, steps, temperature, cfg_scale, seed):
    config = SamplerConfig(
        gen_length=gen_length,
        steps=steps,
        block_length=block_length,
        strategy=remasking,
        temperature=temperature,
        cfg_scale=cfg_scale,
        seed=seed,
    )
    ours, states = trajectory_tokens(PROMPT, config)
    prompt_ids = list(encode_prompt(MODEL, PROMPT, gen_length).ids[: len(PROMPT)])
    reference = llada_generate(prompt_ids, steps, gen_length, block_length, temperature, cfg_scale, remasking, seed)
    assert len(ours) == len(reference) == steps
    for step, (mine, theirs) in enumerate(zip(ours, reference, strict=True), start=1):
        assert mine == theirs, f"step {step} differs"
    assert states[-1].nfe == steps * (2 if cfg_scale > 0 else 1)


# -- Dream _sample (one block, greedy: no randomness) ------------------------------------------------


def dream_sample(prompt_ids, gen_length, steps, alg, eps=1e-3):
    x = torch.tensor([prompt_ids + [MASK] * gen_length])
    timesteps = torch.linspace(1, eps, steps + 1)
    history = []
    for i in range(steps):
        mask_index = x == MASK
        logits = MODEL.logits(x).to(torch.float64)
        logits[..., MASK] = float("-inf")
        probs = torch.softmax(logits[mask_index], dim=-1)
        confidence, x0 = probs.max(dim=-1)
        if alg == "topk_margin":
            top = torch.sort(probs, dim=-1, descending=True).values
            confidence = top[:, 0] - top[:, 1]
        elif alg == "entropy":
            confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
        t, s = timesteps[i], timesteps[i + 1]
        num_mask_token = mask_index.sum() / mask_index.shape[0]
        number = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
        full_confidence = torch.full(x.shape, float("-inf"), dtype=torch.float64)
        full_confidence[mask_index] = confidence
        if number > 0:
            _, transfer = torch.topk(full_confidence[0], number)
            proposal = torch.full_like(x, MASK)
            proposal[mask_index] = x0
            x[0, transfer] = proposal[0, transfer]
        history.append(x[0].tolist())
    return history


@pytest.mark.parametrize(("alg", "steps"), [("maskgit_plus", 6), ("topk_margin", 5), ("entropy", 8), ("entropy", 3)])
def test_matches_dream_sample(alg, steps):
    config = SamplerConfig(gen_length=12, steps=steps, strategy=alg)
    ours, _ = trajectory_tokens(PROMPT, config)
    prompt_ids = list(MODEL.encode(PROMPT))
    assert ours == dream_sample(prompt_ids, 12, steps, alg)


# -- Fast-dLLM threshold decoding ----------------------------------------------------------------------


def fast_dllm_threshold(prompt_ids, gen_length, block_length, threshold):
    x = torch.tensor([prompt_ids + [MASK] * gen_length])
    history = []
    for block_start in range(len(prompt_ids), len(prompt_ids) + gen_length, block_length):
        block_end = block_start + block_length
        while bool((x[0, block_start:block_end] == MASK).any()):
            logits = MODEL.logits(x)[0, block_start:block_end].to(torch.float64)
            logits[..., MASK] = float("-inf")
            x0 = logits.argmax(-1)
            p = torch.softmax(logits, -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            masked = x[0, block_start:block_end] == MASK
            confidence = torch.where(masked, p, torch.tensor(float("-inf"), dtype=torch.float64))
            transfer = masked & (confidence > threshold)
            transfer[confidence.argmax()] = True  # always the most confident: never stalls
            x[0, block_start:block_end] = torch.where(transfer, x0, x[0, block_start:block_end])
            history.append(x[0].tolist())
    return history


@pytest.mark.parametrize(("block_length", "threshold"), [(16, 0.5), (4, 0.3), (8, 0.9)])
def test_matches_fast_dllm_threshold(block_length, threshold):
    # steps = number of slots: the budget floor is 1 and the rule is exactly Fast-dLLM's
    config = SamplerConfig(gen_length=16, block_length=block_length, strategy="threshold", threshold=threshold)
    ours, states = trajectory_tokens(PROMPT, config)
    reference = fast_dllm_threshold(list(MODEL.encode(PROMPT)), 16, block_length, threshold)
    assert ours == reference
    assert states[-1].nfe == len(reference) <= 16


def test_threshold_is_faster_than_one_token_per_step_when_confident():
    config = SamplerConfig(gen_length=16, strategy="threshold", threshold=0.3)
    _, states = trajectory_tokens(PROMPT, config)
    assert len(states) - 1 < 16  # the random model is confident enough to commit several at once


# -- autoregressive decoding ---------------------------------------------------------------------------


def greedy_autoregressive(prompt_ids, gen_length):
    ids = list(prompt_ids)
    for _ in range(gen_length):
        logits = AR_MODEL.model(torch.tensor([ids])).logits[0, -1].to(torch.float64)
        logits[MASK] = float("-inf")
        ids.append(int(logits.argmax()))
    return ids


def test_left_to_right_on_an_autoregressive_model_is_greedy_decoding():
    config = SamplerConfig(gen_length=10, strategy="left_to_right")
    ours, states = trajectory_tokens(PROMPT, config, model=AR_MODEL)
    assert ours[-1] == greedy_autoregressive(list(AR_MODEL.encode(PROMPT)), 10)
    assert [state.committed.tolist() for state in states[1:]] == [[len(PROMPT) + i] for i in range(10)]
