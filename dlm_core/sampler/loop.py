"""The denoising loop: masked canvas in, one ``StepState`` per model step out.

``denoise(model, prompt, config)`` yields an initial state (step 0, no forward pass yet) and then
one state per model step until no mask is left. ``denoise_batch(model, prompts, config)`` decodes
several prompts with ONE forward pass per step and yields a list of states (one per prompt) per
step; ``denoise`` is its batch-of-one case. Both validate everything before returning the generator,
so bad settings raise ``ConfigError`` / ``PromptError`` at the call, before any forward pass.
With ``config.noise == "uniform"`` the slots start as random tokens instead and the run is
``uniform.uniform_batch``'s (DiffusionGemma's entropy-bound acceptance and renoising).

One step (LLaDA's Algorithm 5 generalised; all tensors batched over rows, no per-position loops;
``_Run._advance`` runs these as named sub-steps and returns one ``_StepResult``):

1. Forward: logits for every position of the canvas (``FullForward``; under classifier-free
   guidance the conditional and the unconditional canvas, whose fixed prompt tokens are replaced by
   [MASK], go through the model as one batch and combine as un + (w + 1)(cond - un), LLaDA's form).
2. Window: each row's active block (its slots in reading order). The mask token's logit is set to
   -inf, top-p then top-k truncation (Dream's order, on logits / T) sets the dropped tokens to -inf.
3. Proposal x0 per window slot: argmax at T = 0, else float64 Gumbel-max (see ``strategies``).
4. The strategy scores the block's masked slots and picks the ones to commit (``strategies``).
5. Optional ReMDM re-masking of tokens committed earlier in the block (``remask_positions``); every
   re-masked token is paid back by one extra commit (the next most confident masked slots), so the
   number of masks left after the step is what the schedule says and the run still ends unmasked.
6. Optional token editing (LLaDA 2.1, ``config.edit_threshold`` = tau): a token written earlier in
   the block (not re-masked by this step) is replaced by the model's top candidate there when that
   candidate is a different token with probability >= tau (``edit_positions``). It reads the step's
   logits only and draws nothing, so runs without editing are untouched and the draw order below
   holds with editing too.
7. The block is done when it has no mask left; the next block starts at the next step. With
   ``config.edit_post_steps`` = n, a finished block first takes up to n edit-only steps (LLaDA 2.1's
   post-mask editing, ``_edit_only_step``): one forward pass each, token editing over the block's
   written tokens, no commits and no draws; the block ends at the first that edits nothing.

RNG: one private ``torch.Generator`` on the model's device, seeded with ``config.seed`` (the global
RNG is never touched). Draw order per step, for the b rows decoded at that step and W = the widest
active block among them: (a) if T > 0, ``torch.rand((b, W, V), dtype=float64)`` for Gumbel-max;
(b) strategy draws, ``random`` and ``origin`` each one ``torch.rand((b, W), dtype=float64)``;
(c) if ``remask`` is set, one ``torch.rand((b, W), dtype=float64)``, drawn at every step. So an
independent implementation reproduces a run draw for draw (``tests/test_sampler_reference.py``).

NFE = forward evaluations per sequence: +1 per step, +2 per step under CFG (two canvases are
evaluated even though they share one batched call). A row whose canvas is finished is left out of
later forward passes (its NFE stops); ``denoise_batch`` then repeats its final state.

Steps: ``steps`` (None = one per slot) is split over blocks as ``schedule.allocate_steps`` says.
Fixed-count strategies run exactly ``steps`` steps; ``threshold``, ``factor`` and ``origin`` at most.
Edit-only steps (``edit_post_steps``) come on top of ``steps``, one NFE each.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..state import TOPK, Blank, StepState, step_state
from .autoregressive import check_autoregressive, decode_autoregressive_batch
from .cache import CachedForward
from .config import ConfigError, SamplerConfig, steps_range
from .prompt import EncodedPrompt, PromptError, encode_prompt
from .sampling import gumbel_argmax, truncate, truncates
from .schedule import allocate_steps, dream_timesteps, split_blocks
from .strategies import STRATEGIES, Selection, StepContext, top_k_mask
from .uniform import uniform_batch

MAX_BATCH = 256

# -- forward passes ----------------------------------------------------------------------------------


class FullForward:
    """Step function input: recompute the whole canvas each step (no KV cache).

    ``__call__(x, attention_mask, fixed, window)`` returns float logits at the window positions
    (rows x W x V); ``cost`` is the NFE one call adds per row. A cached AR decoder or a Fast-dLLM
    prefix / dual cache is another class with this interface that keeps state between calls.
    """

    def __init__(self, model, cfg_scale: float = 0.0):
        self.model = model
        self.cfg_scale = float(cfg_scale)
        self.cost = 2 if self.cfg_scale > 0 else 1

    def __call__(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None, fixed: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        index = window.unsqueeze(-1)
        if self.cfg_scale <= 0:
            logits = self.model.logits(x, attention_mask)
            return logits.gather(1, index.expand(-1, -1, logits.shape[-1]))
        # LLaDA CFG: the unconditional canvas hides the prompt; both canvases in one batched call.
        uncond = x.masked_fill(fixed, self.model.mask_id)
        mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
        logits = self.model.logits(torch.cat([x, uncond]), mask)
        logits = logits.gather(1, torch.cat([index, index]).expand(-1, -1, logits.shape[-1]))
        cond, un = logits.float().chunk(2)  # combine in float32 even if the model computes in bf16
        return un + (self.cfg_scale + 1) * (cond - un)


def step_function(model, config: SamplerConfig) -> FullForward | CachedForward:
    """The forward pass ``config`` asks for: ``FullForward`` (with CFG), or a Fast-dLLM
    ``CachedForward`` when ``config.cache`` is set; a model that cannot cache is a ``ConfigError``."""
    if config.cache is None:
        return FullForward(model, config.cfg_scale)
    try:
        return CachedForward(model, config.cache, config.suffix_window)
    except ValueError as error:
        raise ConfigError("cache", str(error)) from error


# -- re-masking ------------------------------------------------------------------------------------


def remask_positions(
    config: SamplerConfig,
    candidates: torch.Tensor,
    transfer: torch.Tensor,
    committed: torch.Tensor,
    commit_prob: torch.Tensor,
    block_size: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """ReMDM re-masking (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
    Scaling") in count form, over the tokens committed earlier in the active block. Returns b x W bool.

    With n slots in the block, m masked at the step start, c commits chosen by the strategy and d
    tokens already committed: alpha_t = d / n (unmasked fraction now), alpha_s = (n - (m - c)) / n
    (after the step), so sigma_max = min(1, (1 - alpha_s) / alpha_t) = min(1, (m - c) / d), the
    largest re-masking probability that keeps ReMDM's marginals valid. Per committed token l:

    * ``cap``:        sigma = min(eta, sigma_max)                 (ReMDM-cap)
    * ``rescale``:    sigma = eta * sigma_max                     (ReMDM-rescale)
    * ``confidence``: sigma_l = min(1, d * min(eta, sigma_max) * softmax_l(-psi))   (ReMDM-conf)

    psi_l is the model probability of token l when it was committed; so ``confidence`` spends the
    cap schedule's expected budget d * sigma, but on the tokens the model was least sure of.
    (Simplification: official ReMDM-conf uses sigma_max * softmax(-psi), i.e. at most one expected
    re-mask per step and no eta; eta is kept as the strength knob here.)

    Each token is re-masked when U_l < sigma_l (one uniform per window slot). At most m - c tokens
    are re-masked (those with the smallest U / sigma): the same bound in counts, and the reason the
    block's last step (m - c = 0) never re-masks. Only steps whose block time t = m / n lies in
    (remask_t_off, remask_t_on] re-mask (ReMDM-loop's window knobs). Prompt tokens, slots of earlier
    blocks and tokens committed in this very step are never eligible.
    """
    uniform = torch.rand(candidates.shape, generator=generator, dtype=torch.float64, device=candidates.device)
    masked_now = candidates.sum(1)
    left = masked_now - transfer.sum(1)  # masks remaining after this step's commits
    done = committed.sum(1)
    sigma_max = (left.double() / done.clamp(min=1).double()).clamp(max=1.0) * (done > 0)
    eta = config.eta
    if config.remask == "rescale":
        sigma = (eta * sigma_max).unsqueeze(1).expand_as(uniform)
    else:
        sigma = sigma_max.clamp(max=eta).unsqueeze(1).expand_as(uniform)
        if config.remask == "confidence":
            weights = (-commit_prob).masked_fill(~committed, float("-inf")).softmax(1).nan_to_num(0.0)
            sigma = (sigma * done.unsqueeze(1) * weights).clamp(max=1.0)
    t_block = masked_now.to(torch.float64) / block_size
    active = (t_block > config.remask_t_off) & (t_block <= config.remask_t_on)
    hit = committed & (uniform < sigma) & active.unsqueeze(1)
    key = -(uniform / sigma.clamp(min=1e-300))
    return top_k_mask(key, hit, left)


# -- the run -----------------------------------------------------------------------------------------


def _checked_prompts(prompts):
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not 1 <= len(prompts) <= MAX_BATCH:
        raise PromptError("prompts", f"prompts must be a list of 1 to {MAX_BATCH} strings")
    return prompts


class _Run:
    """All state of one batched run: tensors on the model's device, rows right-padded."""

    def __init__(self, model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig):
        if not isinstance(config, SamplerConfig):
            raise ConfigError("config", f"config must be a SamplerConfig, got {type(config).__name__}")
        self.forward = step_function(model, config)
        _checked_prompts(prompts)
        self.model, self.config = model, config
        self.spec = STRATEGIES[config.strategy]
        if model.kind == "autoregressive":  # e.g. without a KV cache: decoded here, one slot per step
            check_autoregressive(model, config)
        self.encoded: list[EncodedPrompt] = [encode_prompt(model, text, config.gen_length) for text in prompts]
        self._plan_blocks()
        self._build_canvas()
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(config.seed)
        self._timesteps: dict[int, torch.Tensor] = {}

    def _plan_blocks(self) -> None:
        config, spec = self.config, self.spec
        self.block_plans: list[tuple[list[int], list[int]]] = []
        for row, encoded in enumerate(self.encoded):
            num_slots = len(encoded.slots)
            sizes = split_blocks(num_slots, config.block_length)
            steps = num_slots if config.steps is None else config.steps
            low, high = steps_range(num_slots, config.block_length, spec.one_per_step)
            where = f" for prompt #{row}" if len(self.encoded) > 1 else " for this prompt"
            if spec.one_per_step and not low <= steps <= high:
                raise ConfigError(
                    "steps",
                    f"steps must equal the number of generation slots ({num_slots}{where}) for strategy "
                    f"{config.strategy}, or be None, got {steps}",
                )
            if not low <= steps <= high:
                raise ConfigError(
                    "steps",
                    f"steps must be an integer in [{low}, {high}]{where} ({num_slots} generation slots "
                    f"in {len(sizes)} blocks), or None, got {steps}",
                )
            self.block_plans.append((sizes, allocate_steps(sizes, steps)))

    def _build_canvas(self) -> None:
        device, rows = self.model.device, len(self.encoded)
        self.lengths = [len(e.ids) for e in self.encoded]
        width = max(self.lengths)
        num_slots = max(len(e.slots) for e in self.encoded)
        num_blocks = max(len(sizes) for sizes, _ in self.block_plans)
        mask_id = self.model.mask_id
        x = torch.full((rows, width), mask_id, dtype=torch.long)
        valid = torch.zeros((rows, width), dtype=torch.bool)
        masked = torch.zeros((rows, width), dtype=torch.bool)
        slots = torch.zeros((rows, num_slots), dtype=torch.long)
        block_start = torch.zeros((rows, num_blocks + 1), dtype=torch.long)
        block_size = torch.ones((rows, num_blocks + 1), dtype=torch.long)
        block_steps = torch.ones((rows, num_blocks + 1), dtype=torch.long)
        for row, (encoded, (sizes, steps)) in enumerate(zip(self.encoded, self.block_plans, strict=True)):
            x[row, : len(encoded.ids)] = torch.tensor(encoded.ids, dtype=torch.long)
            valid[row, : len(encoded.ids)] = True
            slot_index = torch.tensor(encoded.slots, dtype=torch.long)
            masked[row, slot_index] = True
            slots[row, : len(encoded.slots)] = slot_index
            block_start[row, 1 : len(sizes) + 1] = torch.tensor(sizes).cumsum(0)
            block_size[row, : len(sizes)] = torch.tensor(sizes)
            block_steps[row, : len(sizes)] = torch.tensor(steps)
        self.x, self.masked, self.slots = x.to(device), masked.to(device), slots.to(device)
        self.fixed = (valid & ~masked).to(device)
        # No mask at all when nothing is padded: the model's fast path, and bit-identical to a lone row.
        self.attention_mask = None if bool(valid.all()) else valid.to(device)
        self.block_start, self.block_size = block_start.to(device), block_size.to(device)
        self.block_steps = block_steps.to(device)
        self.block = torch.zeros(rows, dtype=torch.long, device=device)
        self.step_in_block = torch.zeros(rows, dtype=torch.long, device=device)
        self.post_left = torch.zeros(rows, dtype=torch.long, device=device)  # edit-only steps left in the block
        self.commit_prob = torch.ones((rows, width), dtype=torch.float64, device=device)
        self.nfe = [0] * rows
        self.fixed_np = [self.fixed[row, :n].cpu().numpy().copy() for row, n in enumerate(self.lengths)]
        self.blanks = [Blank.of(n, self.config.record_topk) for n in self.lengths]

    def dream_t_s(self, block_steps: torch.Tensor, step_in_block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t, s = [], []
        for steps, j in zip(block_steps.tolist(), step_in_block.tolist(), strict=True):  # per row, not per position
            if steps not in self._timesteps:
                self._timesteps[steps] = dream_timesteps(steps, self.config.eps)
            t.append(self._timesteps[steps][j])
            s.append(self._timesteps[steps][j + 1])
        device = self.x.device
        return torch.stack(t).to(device), torch.stack(s).to(device)

    # -- states --------------------------------------------------------------------------------------

    def states(self) -> Iterator[list[StepState]]:
        start = time.perf_counter()
        current = [self._initial_state(row) for row in range(len(self.encoded))]
        yield list(current)
        step = 0
        while self._unfinished():
            step += 1
            for result in self._advance(step):
                for row, state in self._states_after(step, time.perf_counter() - start, result).items():
                    current[row] = state
            yield list(current)

    def _unfinished(self) -> bool:
        if bool(self.masked.any()):
            return True
        return self.config.edit_post_steps is not None and bool(self.post_left.any())

    def _state(self, row: int, tokens: np.ndarray, masked: np.ndarray, **readings) -> StepState:
        return step_state(
            tokens=tokens,
            masked=masked,
            fixed=self.fixed_np[row],
            prompt_length=self.encoded[row].prompt_length,
            eos_ids=self.model.eos_ids,
            blank=self.blanks[row],
            nfe=self.nfe[row],
            **readings,
        )

    def _initial_state(self, row: int) -> StepState:
        n = self.lengths[row]
        # copy: on CPU .numpy() shares the live canvas
        tokens, masked = self.x[row, :n].cpu().numpy().copy(), self.masked[row, :n].cpu().numpy().copy()
        return self._state(row, tokens, masked, step=0, block=0)

    # -- one step: window, forward, propose, choose, re-mask, apply, advance blocks ------------------

    @torch.inference_mode()
    def _advance(self, step: int) -> list[_StepResult]:
        """One model step for every row that still has masks or edit-only steps: one forward pass, then
        the rows with masks take the denoising sub-steps and the others an edit-only step."""
        window = self._window()
        logits = self._forward(window, step)
        post = None if self.config.edit_post_steps is None else self.post_left[window.rows] > 0
        if post is None or not bool(post.any()):
            return [self._denoise_step(window, logits)]
        results = []
        if not bool(post.all()):
            denoising = window.select(~post)
            results.append(self._denoise_step(denoising, logits[~post][:, : denoising.positions.shape[1]]))
        editing = window.select(post)
        results.append(self._edit_only_step(editing, logits[post][:, : editing.positions.shape[1]]))
        return results

    def _denoise_step(self, window: _Window, logits: torch.Tensor) -> _StepResult:
        """The denoising sub-steps of rows with masks left (RNG draws (a), (b), (c) in that order)."""
        candidates = self.masked[window.rows].gather(1, window.positions) & window.in_block
        proposal = self._propose(logits, candidates)  # draw (a)
        selection = self._choose(window, proposal, candidates)  # draw (b)
        transfer, remask = self._remask(window, candidates, selection)  # draw (c)
        edit = self._edit(window, proposal, candidates, remask)  # no draw
        prob = self._apply(window, proposal, candidates, transfer, remask)
        self._rewrite(window, edit)
        self._advance_blocks(window, candidates, transfer, remask)
        return _StepResult(window, proposal, candidates, transfer, remask, selection.confidence, prob, edit)

    def _window(self) -> _Window:
        """The rows with masks left (or edit-only steps) and each one's active block, as positions in
        reading order."""
        unfinished = self.masked.any(1)
        if self.config.edit_post_steps is not None:
            unfinished |= self.post_left > 0
        rows = unfinished.nonzero().squeeze(1)
        block = self.block[rows]

        def of_block(table: torch.Tensor) -> torch.Tensor:
            return table[rows].gather(1, block.unsqueeze(1)).squeeze(1)

        start, size = of_block(self.block_start), of_block(self.block_size)
        offsets = torch.arange(int(size.max()), device=self.x.device)  # W = the widest active block
        slot_index = (start.unsqueeze(1) + offsets).clamp(max=self.slots.shape[1] - 1)
        return _Window(
            rows=rows,
            block=block,
            size=size,
            steps=of_block(self.block_steps),
            step_in_block=self.step_in_block[rows],
            positions=self.slots[rows].gather(1, slot_index),
            in_block=offsets < size.unsqueeze(1),
        )

    def _forward(self, window: _Window, step: int) -> torch.Tensor:
        """float64 logits (b x W x V) at the window, [MASK] itself never proposed."""
        attention_mask = None if self.attention_mask is None else self.attention_mask[window.rows]
        logits = self.forward(self.x[window.rows], attention_mask, self.fixed[window.rows], window.positions)
        logits = logits.to(torch.float64)
        logits[..., self.model.mask_id] = float("-inf")
        # One reduction instead of elementwise checks: a row max is NaN/+inf iff the row holds one
        # (or -inf iff every token is -inf, which would make softmax NaN as well).
        if not bool(torch.isfinite(logits.amax(-1)).all()):
            raise FloatingPointError(f"model {self.model.name!r} returned NaN or infinite logits at step {step}")
        return logits

    def _propose(self, logits: torch.Tensor, candidates: torch.Tensor) -> _Proposal:
        """x0 per masked window slot from the truncated logits; probabilities before and after truncation.

        Only masked slots are ever proposed, so truncation and the Gumbel-max argmax run on those rows
        alone (elsewhere ``logits``/``probs`` stay untruncated and x0 is unused); the Gumbel draw still
        covers the whole window, so the RNG stream is the one the module docstring specifies."""
        config = self.config
        model_probs = logits.softmax(-1)
        filtered, probs = logits, model_probs
        if truncates(config.top_k, config.top_p):
            filtered, probs = logits.clone(), model_probs.clone()
            filtered[candidates] = truncate(logits[candidates], config.temperature, config.top_k, config.top_p)
            probs[candidates] = filtered[candidates].softmax(-1)
        x0 = gumbel_argmax(filtered, config.temperature, self.generator, where=candidates)
        topk = model_probs.topk(min(TOPK, model_probs.shape[-1]), dim=-1) if config.record_topk else None
        return _Proposal(filtered, probs, model_probs, x0, topk)

    def _choose(self, window: _Window, proposal: _Proposal, candidates: torch.Tensor) -> Selection:
        """The strategy scores the masked slots of each block and picks the ones to commit."""
        t, s = self.dream_t_s(window.steps, window.step_in_block)
        context = StepContext(
            logits=proposal.logits,
            x0=proposal.x0,
            probs=proposal.probs,
            candidates=candidates,
            num_masked=candidates.sum(1),
            block_size=window.size,
            block_steps=window.steps,
            step_in_block=window.step_in_block,
            t=t,
            s=s,
            generator=self.generator,
            config=self.config,
        )
        selection = self.spec.fn(context)
        return Selection(selection.confidence, selection.transfer & candidates)

    def _remask(
        self, window: _Window, candidates: torch.Tensor, selection: Selection
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(transfer, remask): ReMDM re-masks earlier commits of the block, each one paid back by one
        extra commit (the next most confident mask), so the masks left match the schedule."""
        transfer = selection.transfer
        if self.config.remask is None:
            return transfer, torch.zeros_like(transfer)
        committed_before = ~self.masked[window.rows].gather(1, window.positions) & window.in_block
        psi = self.commit_prob[window.rows].gather(1, window.positions)
        remask = remask_positions(self.config, candidates, transfer, committed_before, psi, window.size, self.generator)
        extra = top_k_mask(selection.confidence, candidates & ~transfer, remask.sum(1))
        return transfer | extra, remask

    def _apply(
        self,
        window: _Window,
        proposal: _Proposal,
        candidates: torch.Tensor,
        transfer: torch.Tensor,
        remask: torch.Tensor,
    ) -> torch.Tensor:
        """Commits take x0, re-masked tokens go back to [MASK]. Returns the model probability of the
        token each window slot shows (its proposal if it was masked, else its committed token)."""
        positions = window.positions
        rows = window.rows.unsqueeze(1).expand_as(positions)
        shown = torch.where(candidates, proposal.x0, self.x[window.rows].gather(1, positions))
        prob = proposal.model_probs.gather(-1, shown.unsqueeze(-1)).squeeze(-1)
        commit_rows, commit_positions = rows[transfer], positions[transfer]
        self.x[commit_rows, commit_positions] = proposal.x0[transfer]
        self.masked[commit_rows, commit_positions] = False
        self.commit_prob[commit_rows, commit_positions] = prob[transfer]
        self.x[rows[remask], positions[remask]] = self.model.mask_id
        self.masked[rows[remask], positions[remask]] = True
        return prob

    def _edit(self, window: _Window, proposal: _Proposal, candidates: torch.Tensor, remask: torch.Tensor) -> _Edit | None:
        """Token editing (LLaDA 2.1): which written tokens of the block the model now rewrites, and to what.
        None when editing is off."""
        tau = self.config.edit_threshold
        if tau is None:
            return None
        current = self.x[window.rows].gather(1, window.positions)
        editable = ~candidates & ~remask & window.in_block & ~self.fixed[window.rows].gather(1, window.positions)
        where, new, prob = edit_positions(proposal.model_probs, current, editable, tau)
        return _Edit(where, current, new, prob)

    def _rewrite(self, window: _Window, edit: _Edit | None) -> None:
        """Apply the edits: each rewritten position takes its new token (and its probability, for ReMDM)."""
        if edit is None or not bool(edit.where.any()):
            return
        rows = window.rows.unsqueeze(1).expand_as(window.positions)[edit.where]
        positions = window.positions[edit.where]
        self.x[rows, positions] = edit.new[edit.where]
        self.commit_prob[rows, positions] = edit.prob[edit.where]

    def _advance_blocks(
        self, window: _Window, candidates: torch.Tensor, transfer: torch.Tensor, remask: torch.Tensor
    ) -> None:
        """A block is done when none of its slots is masked; its row moves to the next block."""
        left = (candidates & ~transfer).sum(1) + remask.sum(1)
        if bool(((left > 0) & (window.step_in_block + 1 >= window.steps)).any()):
            raise RuntimeError(f"internal error: a block overran its {window.steps.tolist()} step budget")
        finished = left == 0
        if self.config.edit_post_steps is not None:  # a finished block first takes its edit-only steps
            self.post_left[window.rows] = torch.where(finished, self.config.edit_post_steps, 0)
            finished = torch.zeros_like(finished)
        self.block[window.rows] = window.block + finished.long()
        self.step_in_block[window.rows] = torch.where(
            left == 0, torch.zeros_like(window.step_in_block), window.step_in_block + 1
        )
        for row in window.rows.tolist():
            self.nfe[row] += self.forward.cost

    def _edit_only_step(self, window: _Window, logits: torch.Tensor) -> _StepResult:
        """An edit-only step (LLaDA 2.1's post-mask editing) for rows whose block has no mask left:
        token editing over the block's written tokens (``edit_positions``, no draws), nothing
        committed. The block ends after a step that edits nothing or spends its last edit-only step.
        Reference: diffusers' ``LLaDA2Pipeline`` loop after a block's last mask (``max_post_steps``)."""
        model_probs = logits.softmax(-1)
        current = self.x[window.rows].gather(1, window.positions)
        editable = window.in_block & ~self.fixed[window.rows].gather(1, window.positions)
        where, new, top_prob = edit_positions(model_probs, current, editable, self.config.edit_threshold)
        prob = model_probs.gather(-1, current.unsqueeze(-1)).squeeze(-1)  # of the token each slot held
        edit = _Edit(where, current, new, top_prob)
        self._rewrite(window, edit)
        left = self.post_left[window.rows] - 1
        done = (left <= 0) | ~where.any(1)
        self.post_left[window.rows] = torch.where(done, torch.zeros_like(left), left)
        self.block[window.rows] = window.block + done.long()
        for row in window.rows.tolist():
            self.nfe[row] += self.forward.cost
        topk = model_probs.topk(min(TOPK, model_probs.shape[-1]), dim=-1) if self.config.record_topk else None
        nothing = torch.zeros_like(where)
        proposal = _Proposal(logits, model_probs, model_probs, current, topk)
        return _StepResult(window, proposal, nothing, nothing, nothing, torch.full_like(prob, math.nan), prob, edit)

    def _states_after(self, step: int, elapsed: float, result: _StepResult) -> dict[int, StepState]:
        """The new ``StepState`` of every row the step decoded (one device-to-host copy per tensor)."""
        rows = result.window.rows
        tokens, masked = self.x[rows].cpu().numpy(), self.masked[rows].cpu().numpy()
        blocks = result.window.block.tolist()
        positions, in_block = result.window.positions.cpu().numpy(), result.window.in_block.cpu().numpy()
        candidates, transfer, remask = (t.cpu().numpy() for t in (result.candidates, result.transfer, result.remask))
        confidence, prob, x0 = (t.cpu().numpy() for t in (result.confidence, result.prob, result.proposal.x0))
        edit = result.edit
        if edit is not None:
            edit_where, edit_from = edit.where.cpu().numpy(), edit.old.cpu().numpy()
        topk, topk_ids, topk_probs = result.proposal.topk, None, None
        if topk is not None:
            topk_ids, topk_probs = topk.indices.cpu().numpy(), topk.values.cpu().numpy()
        states = {}
        for i, row in enumerate(rows.tolist()):
            n, valid = self.lengths[row], in_block[i]
            states[row] = self._state(
                row,
                tokens[i, :n],
                masked[i, :n],
                step=step,
                block=blocks[i],
                committed=positions[i][transfer[i]],
                remasked=positions[i][remask[i]],
                elapsed=elapsed,
                window=positions[i][valid],
                scored=candidates[i][valid],
                confidence=confidence[i][valid],
                prob=prob[i][valid],
                proposal=x0[i][valid],
                topk_ids=None if topk_ids is None else topk_ids[i][valid],
                topk_probs=None if topk_probs is None else topk_probs[i][valid],
                edited=() if edit is None else positions[i][edit_where[i]],
                edited_from=() if edit is None else edit_from[i][edit_where[i]],
            )
        return states


@dataclass
class _Window:
    """The b rows decoded at a step and the W slots of each row's active block (torch, on device)."""

    rows: torch.Tensor  # b: row indices into the batch
    block: torch.Tensor  # b: index of the active block
    size: torch.Tensor  # b: slots in the block
    steps: torch.Tensor  # b: steps budgeted for the block
    step_in_block: torch.Tensor  # b: j, 0-based step inside the block
    positions: torch.Tensor  # b x W: canvas positions of the block's slots, reading order
    in_block: torch.Tensor  # b x W bool: False past a narrower block's end

    def select(self, keep: torch.Tensor) -> _Window:
        """The rows where ``keep`` (b bool), W cut to the widest of their blocks."""
        width = int(self.size[keep].max())
        return _Window(
            rows=self.rows[keep],
            block=self.block[keep],
            size=self.size[keep],
            steps=self.steps[keep],
            step_in_block=self.step_in_block[keep],
            positions=self.positions[keep][:, :width],
            in_block=self.in_block[keep][:, :width],
        )


@dataclass
class _Proposal:
    logits: torch.Tensor  # b x W x V float64: truncated logits (-inf outside top-k / top-p)
    probs: torch.Tensor  # softmax(logits): what strategies score
    model_probs: torch.Tensor  # softmax before truncation: what StepState.prob reports
    x0: torch.Tensor  # b x W: the proposed token per slot
    topk: torch.return_types.topk | None  # of model_probs, with record_topk


@dataclass
class _StepResult:
    """What one step did, per decoded row and window slot (torch, on device)."""

    window: _Window
    proposal: _Proposal
    candidates: torch.Tensor  # b x W bool: slots masked when the step began
    transfer: torch.Tensor  # committed by this step
    remask: torch.Tensor  # re-masked by this step
    confidence: torch.Tensor  # the strategy's score
    prob: torch.Tensor  # model probability of the token each slot shows
    edit: _Edit | None = None  # token edits, when editing is on


@dataclass
class _Edit:
    """Token edits of one step, per decoded row and window slot (torch, on device)."""

    where: torch.Tensor  # b x W bool: rewritten by this step
    old: torch.Tensor  # b x W: the token each slot held when the step began
    new: torch.Tensor  # b x W: the model's top candidate (the new token where ``where``)
    prob: torch.Tensor | None = None  # b x W: the candidate's probability


def edit_positions(
    model_probs: torch.Tensor, tokens: torch.Tensor, editable: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LLaDA 2.1 token editing (Token-to-Token): (where, top token, its probability) per slot.

    ``model_probs`` (b x W x V): the model's temperature-1 distribution at each slot (after guidance,
    [MASK] excluded, before top-k / top-p, which never drop the top token). A slot is rewritten when
    it is ``editable`` (written before this step, not a prompt token, in the active block) and the
    top candidate argmax_v p_v differs from its token with probability p_max >= ``tau``.

    Reference: diffusers' ``BlockRefinementScheduler.step`` (the LLaDA2Pipeline's scheduler) edits
    where ``sampled_probs > editing_threshold`` and the sampled token differs; at temperature 0 the
    sampled token is the argmax, so the two rules agree except when p_max equals tau exactly (ours
    edits, theirs does not; tests/test_sampler_editing.py checks both on the same logits). Our
    simplifications: the candidate is always the argmax (diffusers samples it at temperature > 0).
    Edit-only steps after a block's last mask: ``SamplerConfig.edit_post_steps``.
    """
    top_prob, top = model_probs.max(-1)
    return editable & (top != tokens) & (top_prob >= tau), top, top_prob


# -- public entry points -----------------------------------------------------------------------------


def denoise_batch(model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig | None = None):
    """Denoise several prompts together: one forward pass per step for all unfinished rows.

    Rows are right-padded to a common length and padding is hidden by an attention mask; each row
    has its own masks, blocks, schedule and NFE. Yields one list of ``StepState`` (one per prompt, in
    order) per step, starting with the initial canvases; a finished row repeats its final state.
    Validates before returning: raises ``ConfigError`` / ``PromptError`` at the call.
    An autoregressive model with a KV cache (``model.supports_cache``) is decoded by the exact
    cached decoder in ``sampler.autoregressive`` (same states; its Gumbel draws are per step, so
    sampled runs differ from the uncached path, greedy runs are identical). ``config.cache``
    selects a Fast-dLLM ``CachedForward`` for diffusion models (``step_function``).
    """
    config = SamplerConfig() if config is None else config
    if isinstance(config, SamplerConfig) and config.noise == "uniform":
        if getattr(model, "run_states", None) is not None:
            raise ConfigError("noise", f"noise must be 'mask' for {model.name}: it runs its own sampler "
                                       f"(its own noise is {getattr(model, 'noise', 'mask')!r})")
        return uniform_batch(model, _checked_prompts(prompts), config)
    if getattr(model, "run_states", None) is not None:
        return _external_batch(model, prompts, config)
    if getattr(model, "kind", None) == "autoregressive" and getattr(model, "supports_cache", False):
        # The exact KV-cached left-to-right decoder: O(1) tokens of compute per step instead of O(length).
        if config.cache is not None:
            raise ConfigError(
                "cache",
                f"cache must be None for autoregressive model {model.name!r} (it always uses its exact KV cache)",
            )
        return decode_autoregressive_batch(model, prompts, config)
    return _Run(model, prompts, config).states()


def _external_batch(model, prompts, config: SamplerConfig):
    """A model with its own sampler (``models.external``): its recorded states, as batches of one.
    Its settings errors come out as ``ConfigError`` / ``PromptError`` naming the field, at the call."""
    from ..models.external import ExternalConfigError

    if len(prompts) != 1:
        raise ConfigError("prompt", f"{model.name} runs its own sampler: one prompt at a time, got {len(prompts)}")
    prompt = prompts[0]
    if isinstance(prompt, EncodedPrompt):
        raise PromptError("prompt", f"{model.name} takes its prompt as text (it applies its own chat template)")
    try:
        states = model.run_states(prompt, config)
    except ExternalConfigError as error:
        if error.field == "prompt":
            raise PromptError("prompt", error.message) from None
        raise ConfigError(error.field, error.message) from None
    return ([state] for state in states)


def generate(model, prompt: str | EncodedPrompt, config: SamplerConfig | None = None, *, streamer=None) -> StepState:
    """Run ``denoise`` to the end and return the final state; with ``streamer``, play the run into it
    as DiffusionGemma's ``generate()`` does (``models.bridge.drive_streamer``: ``put`` the prompt,
    ``put_draft`` every step, ``put`` each finished block, ``end``), so
    ``generate(model, prompt, config, streamer=TextDiffusionStreamer(tokenizer))`` prints our
    models' drafts in a terminal like theirs."""
    from ..models.bridge import drive_streamer

    config = SamplerConfig() if config is None else config
    states = denoise(model, prompt, config)
    if streamer is None:
        return collections.deque(states, maxlen=1)[0]
    return drive_streamer(states, streamer, block_length=config.block_length, vocab_size=model.vocab_size)


def denoise(model, prompt: str | EncodedPrompt, config: SamplerConfig | None = None) -> Iterator[StepState]:
    """Denoise one prompt (text, or a canvas of token ids from ``canvas_prompt``); yields the initial
    state, then one ``StepState`` per model step.

    The last state has no masks. Validates before returning (errors are raised at the call).
    """
    states = denoise_batch(model, [prompt], config)
    return (batch[0] for batch in states)


def run_to_end(model, prompt: str | EncodedPrompt, config: SamplerConfig | None = None) -> StepState:
    """The final state of ``denoise`` (convenience)."""
    final = None
    for final in denoise(model, prompt, config):  # noqa: B007 (we want the last one)
        pass
    assert final is not None
    return final


def tokens_per_forward(state: StepState) -> float:
    """Generated slots per forward evaluation (the speed-up over one token per forward)."""
    return float((~state.fixed).sum()) / state.nfe if state.nfe else math.nan
