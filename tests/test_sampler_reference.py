"""Reference checks: the sampler reproduces, token for token, straightforward re-implementations of
LLaDA's generate(), Dream's _sample, Fast-dLLM's threshold decoding and greedy AR decoding.

The reference loops below are written from the papers' published algorithms with plain Python
loops and their own random draws. Two documented conventions of ours are mirrored on purpose:
the mask token's logit is set to -inf (a masked LM never proposes [MASK]), and the RNG draw order
(``dlm_core.sampler.loop`` module docstring): per step, Gumbel uniforms of shape
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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


def greedy_blockwise(prompt_ids, gen_length, block_length, accept):
    """Fast-dLLM's loop: block by block, one forward per step, greedy proposals (argmax, [MASK]
    excluded) committed where ``accept(logits, masked)`` says, until the block has no mask left.
    Returns the canvas after every step."""
    x = torch.tensor([prompt_ids + [MASK] * gen_length])
    history = []
    for block_start in range(len(prompt_ids), len(prompt_ids) + gen_length, block_length):
        block = slice(block_start, block_start + block_length)
        while bool((x[0, block] == MASK).any()):
            logits = MODEL.logits(x)[0, block].to(torch.float64)
            logits[..., MASK] = float("-inf")
            masked = x[0, block] == MASK
            x[0, block] = torch.where(accept(logits, masked), logits.argmax(-1), x[0, block])
            history.append(x[0].tolist())
    return history


def assert_matches_step_for_step(config, reference):
    """Our run on ``PROMPT`` has ``reference``'s canvas after every step, one forward per step."""
    ours, states = trajectory_tokens(PROMPT, config)
    assert ours == reference
    assert states[-1].nfe == len(reference) <= config.gen_length


def fast_dllm_threshold(prompt_ids, gen_length, block_length, threshold):
    def accept(logits, masked):
        x0 = logits.argmax(-1)
        p = torch.softmax(logits, -1).gather(-1, x0.unsqueeze(-1)).squeeze(-1)
        confidence = torch.where(masked, p, torch.tensor(float("-inf"), dtype=torch.float64))
        transfer = masked & (confidence > threshold)
        transfer[confidence.argmax()] = True  # always the most confident: never stalls
        return transfer

    return greedy_blockwise(prompt_ids, gen_length, block_length, accept)


@pytest.mark.parametrize(("block_length", "threshold"), [(16, 0.5), (4, 0.3), (8, 0.9)])
def test_matches_fast_dllm_threshold(block_length, threshold):
    # steps = number of slots: the budget floor is 1 and the rule is exactly Fast-dLLM's
    config = SamplerConfig(gen_length=16, block_length=block_length, strategy="threshold", threshold=threshold)
    assert_matches_step_for_step(config, fast_dllm_threshold(list(MODEL.encode(PROMPT)), 16, block_length, threshold))


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


# -- EB-sampler: diffusers' EntropyBoundScheduler --------------------------------------------------
#
# diffusers 0.42.1 ships the EB-sampler's acceptance rule (Ben-Hamu et al. 2025) as
# ``EntropyBoundScheduler.step``, written for uniform-state canvases. Its rule and ours differ only in
# details that the mapping below pins down:
#
# * temperature: diffusers divides the logits by an annealed temperature t_min + (t_max - t_min) *
#   (N - step) / N and measures the entropy of that distribution; ours uses the temperature-1
#   ``ctx.probs``. With t_max = t_min = 1 both measure H(softmax(logits)).
# * which positions compete: diffusers ranks every position of its block (a uniform-state canvas has
#   no masks); ours ranks the masked slots of the active block. The mapping feeds diffusers the
#   candidates' logits only.
# * the rule itself is the same: sort entropies ascending, accept where (sum of the accepted) - (the
#   largest of them) <= gamma, with ``<=`` on both sides; the first position always passes
#   (0 <= gamma), so both accept at least one.
# * arithmetic: diffusers computes the left side as cumsum(H) - H, ours as the exclusive cumulative
#   sum sum_{i<k} H_(i). Mathematically equal; in floating point cumsum - H can cancel to 0 when a
#   tiny entropy precedes a much larger one (H = [1e-21, 1e-21, 2.4], gamma = 0: diffusers' left sides
#   are [0, 1e-21, 0], so it accepts the 1st and 3rd but not the 2nd, which is neither a prefix nor
#   the lowest entropies). Ours never decreases, so ours always equals the rule in exact arithmetic
#   (checked against ``fractions``), and equals diffusers wherever diffusers' left sides agree with it.
# * ties: diffusers sorts with ``torch.sort`` (no stability promise); ours breaks ties by reading
#   order. When the bound cuts through a group of equal entropies, both accept the same number of
#   slots with the same entropies, but may pick different members of the group.
# * rejected positions: diffusers renoises them with uniform random tokens; ours leaves them masked.
# * budget: ours also commits at least ceil(masked / steps left) (``minimum_rate``); with steps =
#   number of slots that floor is 1, the setting used here.

from fractions import Fraction  # noqa: E402

from diffusers.schedulers.scheduling_entropy_bound import EntropyBoundScheduler  # noqa: E402

from dlm_core.sampler import STRATEGIES, StepContext  # noqa: E402
from dlm_core.sampler.strategies import token_entropy  # noqa: E402


def diffusers_accepts(logits, gamma):
    """diffusers' accepted positions for one row of logits (W x V), temperature pinned to 1."""
    scheduler = EntropyBoundScheduler(entropy_bound=gamma, t_max=1.0, t_min=1.0, num_inference_steps=8)
    sample = torch.zeros(1, logits.shape[0], dtype=torch.long)
    output = scheduler.step(logits.unsqueeze(0), 0, sample, generator=torch.Generator().manual_seed(0))
    return output.accepted_index[0]


def ours_accepts(logits, gamma, candidates):
    """Our ``entropy_bound`` selection for one row (W x V) with the given candidates, steps = slots."""
    width = logits.shape[0]
    ctx = StepContext(
        logits=logits.unsqueeze(0), x0=logits.argmax(-1).unsqueeze(0), probs=logits.softmax(-1).unsqueeze(0),
        candidates=candidates.unsqueeze(0), num_masked=candidates.sum().reshape(1),
        block_size=torch.tensor([width]), block_steps=torch.tensor([width]), step_in_block=torch.tensor([0]),
        t=torch.tensor([1.0]), s=torch.tensor([0.5]), generator=torch.Generator().manual_seed(0),
        config=SamplerConfig(strategy="entropy_bound", gamma=gamma),
    )
    return STRATEGIES["entropy_bound"].fn(ctx).transfer[0]


def diffusers_on_candidates(logits, gamma, candidates):
    """diffusers' rule on the candidate slots only, scattered back to the full window."""
    accepted = torch.zeros(logits.shape[0], dtype=torch.bool)
    accepted[candidates] = diffusers_accepts(logits[candidates], gamma)
    return accepted


def random_logits(generator, width, vocab):
    """Logits whose rows range from near one-hot to near uniform (entropies from ~0 to ~log V)."""
    scale = 10 ** (torch.rand(width, 1, generator=generator, dtype=torch.float64) * 3 - 1.5)
    return torch.randn(width, vocab, generator=generator, dtype=torch.float64) * scale


def partial_sums(logits, candidates):
    """The rule's left-hand sides: sums of the k - 1 lowest candidate entropies, k = 1..masked."""
    ordered = token_entropy(logits[candidates].softmax(-1)).sort().values
    return ordered.cumsum(0) - ordered


@pytest.mark.slow  # 300 random canvases, each against diffusers at several gammas
def test_entropy_bound_accepts_what_diffusers_accepts_on_random_logits():
    generator = torch.Generator().manual_seed(1234)
    checked = cancelled = 0
    for trial in range(300):
        width, vocab = int(torch.randint(1, 33, (1,), generator=generator)), int(torch.randint(2, 60, (1,), generator=generator))
        logits = random_logits(generator, width, vocab)
        candidates = torch.rand(width, generator=generator) < 0.7
        candidates[int(torch.randint(0, width, (1,), generator=generator))] = True  # >= 1 masked slot
        sums = partial_sums(logits, candidates).tolist()
        # gammas: 0, huge, a random one, and midpoints between consecutive left-hand sides (every count)
        gammas = [0.0, 1000.0, float(torch.rand(1, generator=generator)) * 3]
        gammas += [(a + b) / 2 for a, b in zip(sums, sums[1:], strict=False)][:: max(1, len(sums) // 6)]
        # a gamma within rounding of a left-hand side is a coin flip for any two float implementations
        gammas = [gamma for gamma in gammas if gamma in (0.0, 1000.0) or min(abs(gamma - s) for s in sums) > 1e-9]
        for gamma in gammas:
            ours = ours_accepts(logits, gamma, candidates)
            assert torch.equal(ours, exact_accepts(token_entropy(logits.softmax(-1)), candidates, gamma))
            if diffusers_cancels(logits[candidates], gamma):
                cancelled += 1  # diffusers' arithmetic decides otherwise; test_diffusers_cumsum_cancellation
                continue
            reference = diffusers_on_candidates(logits, gamma, candidates)
            assert torch.equal(ours, reference), (trial, gamma)
            checked += 1
    assert checked > 1000 and cancelled < checked / 100


def test_entropy_bound_edge_cases_match_diffusers():
    generator = torch.Generator().manual_seed(7)
    logits = random_logits(generator, 16, 40)
    everything = torch.ones(16, dtype=torch.bool)
    lowest = int(token_entropy(logits.softmax(-1)).argmin())
    for gamma in (0.0, 1e-12):  # entropies are > 0 here: exactly one, the lowest-entropy slot
        assert ours_accepts(logits, gamma, everything).nonzero().flatten().tolist() == [lowest]
        assert diffusers_accepts(logits, gamma).nonzero().flatten().tolist() == [lowest]
    assert bool(ours_accepts(logits, 1000.0, everything).all()) and bool(diffusers_accepts(logits, 1000.0).all())
    # one-hot rows (truncation to a single token) have entropy exactly 0: with gamma = 0 they add
    # nothing to the sum, so all of them pass, and so does the lowest-entropy slot after them
    peaked = logits.clone()
    peaked[[2, 5, 11], 1:] = float("-inf")
    rest = token_entropy(peaked.softmax(-1))
    rest[[2, 5, 11]] = float("inf")
    ours = ours_accepts(peaked, 0.0, everything)
    assert ours.nonzero().flatten().tolist() == sorted([2, 5, 11, int(rest.argmin())])
    assert torch.equal(ours, diffusers_accepts(peaked, 0.0))


def exact_accepts(entropy, candidates, gamma):
    """The rule in exact rational arithmetic over the given float entropies, ties in reading order."""
    order = sorted(candidates.nonzero().flatten().tolist(), key=lambda i: (entropy[i].item(), i))
    accepted, total = torch.zeros_like(candidates), Fraction(0)
    for i in order:
        if total > Fraction(gamma):  # sum of the lower entropies = the sum minus the largest
            break
        accepted[i], total = True, total + Fraction(entropy[i].item())
    return accepted


def diffusers_cancels(logits, gamma):
    """Whether diffusers' float cumsum(H) - H decides some position differently from exact arithmetic."""
    ordered = torch.distributions.Categorical(logits=logits).entropy().sort().values
    exact = [sum(map(Fraction, ordered[:k].tolist()), Fraction(0)) <= Fraction(gamma) for k in range(len(ordered))]
    return (ordered.cumsum(0) - ordered <= gamma).tolist() != exact


def test_entropy_bound_ties_match_diffusers_in_count_and_entropies():
    generator = torch.Generator().manual_seed(99)
    compared = 0
    for _ in range(50):
        base = random_logits(generator, 4, 12)
        rows = torch.randint(0, 4, (14,), generator=generator)
        logits = base[rows]  # copies of 4 rows: equal entropies, bit for bit
        everything = torch.ones(14, dtype=torch.bool)
        entropy = token_entropy(logits.softmax(-1))
        for gamma in (0.0, 0.3, 1.0, 2.5, 1000.0):
            ours = ours_accepts(logits, gamma, everything)
            # ours is the exact rule, ties broken by reading order (the leftmost of a tied group first)
            assert torch.equal(ours, exact_accepts(entropy, everything, gamma))
            if diffusers_cancels(logits, gamma):
                continue  # diffusers' arithmetic decides otherwise; test_diffusers_cumsum_cancellation
            reference = diffusers_accepts(logits, gamma)
            assert int(ours.sum()) == int(reference.sum())
            assert entropy[ours].sort().values.tolist() == entropy[reference].sort().values.tolist()
            compared += 1
    assert compared > 200


def test_diffusers_cumsum_cancellation_and_ours_exact_prefix():
    # Two near-one-hot rows (entropy ~1e-21) and a flat one (entropy ~log 12): at gamma = 0 the exact
    # rule accepts one slot (the second tiny entropy already exceeds 0).
    logits = torch.zeros(3, 12, dtype=torch.float64)
    logits[:2, 0] = 50.0
    entropy = token_entropy(logits.softmax(-1))
    assert 0 < entropy[0] < 1e-15 and entropy[2] > 2
    everything = torch.ones(3, dtype=torch.bool)
    ours = ours_accepts(logits, 0.0, everything)
    assert ours.tolist() == [True, False, False] == exact_accepts(entropy, everything, 0.0).tolist()
    # diffusers: cumsum - H = [0, e, (2e + 2.48) - 2.48 = 0] accepts slot 0 and the high-entropy slot 2
    assert diffusers_cancels(logits, 0.0)
    assert diffusers_accepts(logits, 0.0).tolist() == [True, False, True]


# A plain loop that takes its acceptance from diffusers: greedy proposals, block by block.


def diffusers_entropy_bound_decode(prompt_ids, gen_length, block_length, gamma):
    def accept(logits, masked):
        accepted = torch.zeros_like(masked)
        accepted[masked] = diffusers_accepts(logits[masked], gamma)
        return accepted

    return greedy_blockwise(prompt_ids, gen_length, block_length, accept)


@pytest.mark.parametrize(("block_length", "gamma"), [(16, 0.1), (8, 1.0), (4, 0.0), (16, 5.0)])
def test_entropy_bound_decoding_matches_a_diffusers_driven_loop(block_length, gamma):
    config = SamplerConfig(gen_length=16, block_length=block_length, strategy="entropy_bound", gamma=gamma)
    assert_matches_step_for_step(config, diffusers_entropy_bound_decode(list(MODEL.encode(PROMPT)), 16, block_length, gamma))
