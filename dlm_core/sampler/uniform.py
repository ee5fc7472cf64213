"""Uniform-state decoding for our own diffusion models: a canvas of random tokens that settles.

``denoise`` hands a run here when ``config.noise == "uniform"``. It follows DiffusionGemma's sampler in
transformers (``models/diffusion_gemma/generation_diffusion_gemma.py``: ``EntropyBoundSampler``,
``LinearTemperatureScheduleLogitsProcessor``, ``StableAndConfidentStoppingCriteria`` and the
``_denoising_step`` of ``DiffusionGemmaGenerationMixin.generate``), on a CanvasLM-style model that
reads the whole sequence at once. One run, per prompt:

0. Canvas: every generation slot (``[MASK]`` placeholders and ``gen_length`` appended) holds a
   uniform random token of ``noise_ids(model)`` (every id but [MASK] and end-of-text, and a
   tokenizer's other special ids), drawn from the run's private generator. Prompt tokens are fixed.
1. Forward: logits at every slot; [MASK] gets -inf (a uniform-state canvas has no masks).
2. Temperature (``schedule_temperature``): at step k of N (k = 1..N, n = N - k + 1 steps remaining)
   T = t_min + (t_max - t_min) * n / N, with t_max = ``config.temperature`` and t_min =
   ``config.final_temperature`` (None: t_min = t_max). The processed logits are logits / T.
3. Draft: one token per slot sampled from softmax(processed) (LLaDA's float64 Gumbel-max, after
   optional top-p / top-k truncation of the processed logits), and the argmax canvas.
4. Accept (``entropy_bound_accept``): sort the slots by the entropy of softmax(processed), lowest
   first, and accept the prefix with sum(H) - max(H) <= gamma (``config.gamma``). Acceptance is
   recomputed every step over the whole canvas: a slot accepted before may fall out (it is renoised),
   and an accepted slot takes the step's new draft.
5. Renoise: every slot not accepted gets a fresh random token (the model's input at the next step).
6. Stop when N steps are done, or (``config.stop_confidence`` set) when the argmax canvas equals the
   argmax canvases of the last ``stop_stability`` steps and the mean entropy of processed logits over
   the slots is below ``stop_confidence``. The answer is the last step's argmax canvas (as
   ``generate()`` appends ``argmax_canvas``), recorded as one extra state without a forward pass.

Simplifications against DiffusionGemma: one canvas holding every slot (no block-autoregressive
canvases, no encoder / KV cache, no self-conditioning on the previous step's logits: CanvasLM has no
input for them); drafts are drawn by Gumbel-max from our generator instead of ``torch.multinomial``
from the global RNG; noise never draws special tokens (transformers draws from the whole vocabulary);
top-p / top-k (not part of DiffusionGemma's defaults) truncate only the draft's distribution, while
entropies, acceptance and the stop read the untruncated processed logits, as the reference does.

States (the display's conventions for uniform runs, as ``models.bridge.StepRecorder`` records
DiffusionGemma): ``masked`` = not accepted; such a slot shows the step's argmax draft in ``tokens``
(step 0 shows the random canvas itself); ``committed`` = accepted now, not before; ``remasked`` =
accepted before, renoised now; ``edited`` / ``edited_from`` = accepted before and now with another
token; ``confidence`` = -entropy and ``proposal`` = the shown token at slots not accepted when the
step began; ``prob`` = the temperature-1 probability of the shown token at every slot.

RNG (one private ``torch.Generator`` seeded with ``config.seed``; rows = prompts decoded together,
S = the most slots of any row): at the start ``torch.randint(len(noise_ids), (rows, S))``; per step,
for the b rows still running, (a) ``torch.rand((b, S, V), dtype=float64)`` for Gumbel-max, then (b)
``torch.randint(len(noise_ids), (b, S))`` for renoising.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..state import TOPK, Blank, StepState, step_state
from .config import ConfigError, SamplerConfig
from .prompt import EncodedPrompt, PromptError, encode_prompt
from .sampling import gumbel_argmax, truncate


def noise_ids(model) -> torch.Tensor:
    """The token ids a uniform-state canvas draws from: the vocabulary without [MASK], end-of-text and
    (for a ``transformers`` tokenizer) its other special ids, as ``train.noise_token_ids`` trains with."""
    special = {int(model.mask_id), *(int(i) for i in model.eos_ids)}
    tokenizer = getattr(getattr(model, "codec", None), "tokenizer", None)
    if tokenizer is not None:
        special.update(int(i) for i in tokenizer.all_special_ids)
    return torch.tensor([i for i in range(int(model.vocab_size)) if i not in special], dtype=torch.long)


def schedule_temperature(t_max: float, t_min: float, remaining: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``LinearTemperatureScheduleLogitsProcessor``: t_min + (t_max - t_min) * remaining / steps."""
    return t_min + (t_max - t_min) * remaining.double() / steps.double()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last axis (-inf logits are left out)."""
    return torch.special.entr(logits.softmax(-1)).sum(-1)


def entropy_bound_accept(token_entropy: torch.Tensor, bound: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``EntropyBoundSampler.accept_canvas``'s rule per row: sort ascending by entropy and accept the
    prefix whose cumulative entropy minus its largest (the last) is <= ``bound``. ``valid`` (bool, same
    shape) leaves padding out: it sorts last and is never accepted."""
    if valid is None:
        valid = torch.ones_like(token_entropy, dtype=torch.bool)
    keyed = token_entropy.masked_fill(~valid, float("inf"))
    ordered, order = keyed.sort(dim=-1, stable=True)
    keep = (ordered.cumsum(-1) - ordered) <= bound  # inf - inf = nan: padding is never kept
    return torch.zeros_like(keep).scatter(-1, order, keep) & valid


def uniform_batch(model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig) -> Iterator[list[StepState]]:
    """Decode ``prompts`` as uniform-state canvases (one forward pass per step for all running rows);
    yields a list of states per step, a finished row repeating its final state. Validates at the call."""
    return _UniformRun(model, prompts, config).states()


class _UniformRun:
    def __init__(self, model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig):
        if model.kind != "diffusion":
            raise ConfigError("noise", f"noise 'uniform' needs a diffusion model; {model.name} is {model.kind}")
        self.model, self.config = model, config
        self.encoded = [encode_prompt(model, prompt, config.gen_length) for prompt in prompts]
        for row, encoded in enumerate(self.encoded):
            if not encoded.slots:
                where = f" (prompt #{row})" if len(self.encoded) > 1 else ""
                raise PromptError("prompt", f"prompt has no generation slots{where}: set gen_length or write [MASK]")
        self.noise = noise_ids(model).to(model.device)
        if self.noise.numel() == 0:
            raise ConfigError("noise", f"noise 'uniform' needs ordinary tokens to draw from; {model.name} has none")
        device, rows = model.device, len(self.encoded)
        self.lengths = [len(e.ids) for e in self.encoded]
        self.num_slots = [len(e.slots) for e in self.encoded]
        width, slots = max(self.lengths), max(self.num_slots)
        self.steps = torch.tensor([config.steps or n for n in self.num_slots], device=device)
        x = torch.full((rows, width), model.mask_id, dtype=torch.long)
        valid = torch.zeros((rows, width), dtype=torch.bool)
        slot_index = torch.zeros((rows, slots), dtype=torch.long)
        slot_valid = torch.zeros((rows, slots), dtype=torch.bool)
        for row, encoded in enumerate(self.encoded):
            x[row, : len(encoded.ids)] = torch.tensor(encoded.ids, dtype=torch.long)
            valid[row, : len(encoded.ids)] = True
            slot_index[row, : len(encoded.slots)] = torch.tensor(encoded.slots, dtype=torch.long)
            slot_index[row, len(encoded.slots) :] = encoded.slots[-1]  # padding repeats the last slot (never used)
            slot_valid[row, : len(encoded.slots)] = True
        self.x, self.slot_index, self.slot_valid = x.to(device), slot_index.to(device), slot_valid.to(device)
        self.attention_mask = None if bool(valid.all()) else valid.to(device)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        initial = self.noise[torch.randint(len(self.noise), (rows, slots), generator=self.generator, device=device)]
        self._write(torch.arange(rows, device=device), initial, self.slot_valid)
        self.accepted = torch.zeros((rows, slots), dtype=torch.bool, device=device)
        self.shown = initial.clone()  # what each slot displays: accepted token or the latest argmax draft
        self.history = [torch.full((max(config.stop_stability, 1), slots), -1, dtype=torch.long, device=device)
                        for _ in range(rows)]
        self.step = torch.zeros(rows, dtype=torch.long, device=device)
        self.running = torch.ones(rows, dtype=torch.bool, device=device)
        self.nfe = [0] * rows
        self.fixed = []
        for encoded in self.encoded:
            fixed = np.ones(len(encoded.ids), dtype=bool)
            fixed[list(encoded.slots)] = False
            self.fixed.append(fixed)
        self.blanks = [Blank.of(n, config.record_topk) for n in self.lengths]

    def _write(self, rows: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor) -> None:
        """Write ``tokens`` (b x S) into the canvas slots of ``rows`` where ``where``."""
        index = self.slot_index[rows]
        current = self.x[rows].gather(1, index)
        self.x[rows] = self.x[rows].scatter(1, index, torch.where(where, tokens, current))

    # -- states ------------------------------------------------------------------------------------

    def states(self) -> Iterator[list[StepState]]:
        start = time.perf_counter()
        current = [self._state(row, step=0, elapsed=0.0) for row in range(len(self.encoded))]
        yield list(current)
        step = 0
        while bool(self.running.any()):
            step += 1
            readings, final = self._advance()
            elapsed = time.perf_counter() - start
            for row, values in readings.items():
                current[row] = self._state(row, step=step, elapsed=elapsed, **values)
            yield list(current)
            changed = {row: self._finish(row, argmax) for row, argmax in final.items()}
            changed = {row: values for row, values in changed.items() if values is not None}
            if changed:  # the answer: the argmax canvas, one more state without a forward pass
                step += 1
                elapsed = time.perf_counter() - start
                for row, values in changed.items():
                    current[row] = self._state(row, step=step, elapsed=elapsed, **values)
                yield list(current)

    def _finish(self, row: int, argmax: torch.Tensor) -> dict | None:
        """Write the final argmax canvas of ``row``; its readings, or None when it changes nothing."""
        valid = self.slot_valid[row]
        shown = torch.where(valid, argmax, self.shown[row])
        if bool((self.accepted[row] == valid).all()) and bool((shown == self.shown[row]).all()):
            return None
        before, old = self.accepted[row].clone(), self.shown[row].clone()
        self._write(torch.tensor([row], device=valid.device), argmax[None], valid[None])
        self.shown[row], self.accepted[row] = shown, valid.clone()
        return {"before": before, "old": old, "window": ()}

    def _state(self, row: int, *, step: int, elapsed: float, before: torch.Tensor | None = None,
               old: torch.Tensor | None = None, **readings) -> StepState:
        n, count = self.lengths[row], self.num_slots[row]
        positions = self.slot_index[row, :count].cpu().numpy()
        tokens = self.x[row, :n].cpu().numpy().copy()
        shown = self.shown[row, :count].cpu().numpy()
        accepted = self.accepted[row, :count].cpu().numpy()
        tokens[positions] = shown
        masked = np.zeros(n, dtype=bool)
        masked[positions] = ~accepted
        extra = {}
        if before is not None:
            was = before[:count].cpu().numpy()
            old_tokens = old[:count].cpu().numpy()
            changed = was & accepted & (old_tokens != shown)
            extra = {
                "committed": positions[~was & accepted],
                "remasked": positions[was & ~accepted],
                "edited": positions[changed],
                "edited_from": old_tokens[changed],
                "window": positions,
                "scored": ~was,
            }
            if "window" in readings:  # a state without a forward pass reads nothing
                extra.pop("scored")
                extra["window"] = readings.pop("window")
            extra.update({key: None if value is None else value[:count] for key, value in readings.items()})
        return step_state(
            step=step, block=0, tokens=tokens, masked=masked, fixed=self.fixed[row],
            prompt_length=self.encoded[row].prompt_length, eos_ids=self.model.eos_ids, blank=self.blanks[row],
            nfe=self.nfe[row], elapsed=elapsed, **extra,
        )

    # -- one step ------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _advance(self) -> tuple[dict[int, dict], dict[int, torch.Tensor]]:
        """One denoising step of every running row (draws (a) then (b)): the readings of each row for
        its ``StepState``, and the argmax canvas of each row that stops here."""
        config = self.config
        rows = self.running.nonzero().squeeze(1)
        index = self.slot_index[rows]
        valid = self.slot_valid[rows]
        attention_mask = None if self.attention_mask is None else self.attention_mask[rows]
        logits = self.model.logits(self.x[rows], attention_mask)
        logits = logits.gather(1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).to(torch.float64)
        logits[..., self.model.mask_id] = float("-inf")
        self.step[rows] += 1
        steps = self.steps[rows]
        remaining = steps - self.step[rows] + 1
        t_min = config.temperature if config.final_temperature is None else config.final_temperature
        temperature = schedule_temperature(config.temperature, t_min, remaining, steps)
        processed = logits / temperature[:, None, None]
        token_entropy = entropy(processed)
        filtered = truncate(processed, 1.0, config.top_k, config.top_p)
        draft = gumbel_argmax(filtered, 1.0, self.generator)  # draw (a)
        argmax = processed.argmax(-1)
        accepted = entropy_bound_accept(token_entropy, config.gamma, valid)
        noise = self.noise[torch.randint(len(self.noise), index.shape, generator=self.generator,
                                         device=index.device)]  # draw (b)
        before, old = self.accepted[rows].clone(), self.shown[rows].clone()
        # The model's next input: the draft where accepted, fresh noise elsewhere.
        self._write(rows, torch.where(accepted, draft, noise), valid)
        shown = torch.where(accepted, draft, argmax)
        stop = self._stops(rows, argmax, token_entropy, valid) | (self.step[rows] >= steps)
        model_probs = logits.softmax(-1)
        prob = model_probs.gather(-1, shown.unsqueeze(-1)).squeeze(-1)
        topk = model_probs.topk(min(TOPK, model_probs.shape[-1]), dim=-1) if config.record_topk else None
        self.accepted[rows], self.shown[rows] = accepted, shown
        readings = {}
        for i, row in enumerate(rows.tolist()):
            self.nfe[row] += 1
            readings[row] = {
                "before": before[i],
                "old": old[i],
                "confidence": (-token_entropy[i]).cpu().numpy(),
                "prob": prob[i].cpu().numpy(),
                "proposal": shown[i].cpu().numpy(),
                "topk_ids": None if topk is None else topk.indices[i].cpu().numpy(),
                "topk_probs": None if topk is None else topk.values[i].cpu().numpy(),
            }
        self.running[rows[stop]] = False
        final = {row: argmax[i] for i, row in enumerate(rows.tolist()) if bool(stop[i])}
        return readings, final

    def _stops(self, rows: torch.Tensor, argmax: torch.Tensor, token_entropy: torch.Tensor,
               valid: torch.Tensor) -> torch.Tensor:
        """``StableAndConfidentStoppingCriteria`` per row: the argmax canvas equals the last
        ``stop_stability`` ones, and the mean slot entropy is below ``stop_confidence``."""
        stop = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        threshold = self.config.stop_confidence
        if threshold is None:
            return stop
        stability = self.config.stop_stability
        for i, row in enumerate(rows.tolist()):
            history = self.history[row]
            stable = True if stability == 0 else bool((history == argmax[i]).all())
            self.history[row] = torch.roll(history, shifts=-1, dims=0)
            self.history[row][-1] = argmax[i]
            mean = token_entropy[i][valid[i]].mean()
            stop[i] = stable and bool(mean < threshold)
        return stop
