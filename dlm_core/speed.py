"""Why a diffusion lane wins or loses the race: cost per forward, break-even, and a GPU projection.

An autoregressive (AR) decoder with a KV cache emits exactly one token per forward pass, so its
time is ``N x a`` for N tokens (``a`` = one cached decode step). A diffusion decoder makes ``N / k``
forwards when it commits ``k`` tokens per pass on average, each costing ``d``. It finishes first iff

    (N / k) x d  <  N x a      <=>      k  >  d / a,

so the **break-even tokens per pass is the cost ratio d / a**: the number of tokens one diffusion
forward must deliver to pay for itself. Three sources for ``d`` and ``a``, all measured, none assumed:

* ``lane_cost(trace)``: the race's own record (``dlm_core.race`` meters every forward call of every
  lane). ``d`` and ``a`` are the lanes' *mean* seconds per forward over the run, sampler bookkeeping
  included, because that is exactly what the race clock adds up: with these means the inequality
  above is the race's result, not a model of it (``break_even``).
* ``measure_forward_costs(diffusion, ar, length, cache)``: times the two networks directly on this
  machine (warm-up, then medians over repeats; cached per model pair, length and cache), for a
  lane that has not run yet or a race without an AR lane.
* ``project_race(...)``: the same run's forward-pass trace (how many forwards, how many query and
  cached tokens each) re-timed under a roofline cost model of a *named large model on a named GPU*.
  This is a projection, not a measurement, and is labelled as one everywhere it is shown.

The roofline model (Williams et al. 2009) for one forward of ``rows`` sequences, each feeding ``q``
query tokens and attending to ``c`` cached tokens:

    memory  = (weight bytes + rows x c x KV bytes per token) / memory bandwidth
    compute = (2 x parameters x rows x q  +  4 x layers x d_model x rows x q x (q + c)) / peak FLOP/s
    time    = max(memory, compute)

Decoding one token reads every weight once for ~2 FLOPs per parameter, far below what the GPU can
compute per byte loaded, so small forwards are memory-bound: a forward over 32 query tokens costs
about what a forward over 1 does, and ``k`` tokens per pass is ~``k`` x faster (the seed's "5-10x"
for Mercury / Fast-dLLM). The crossover ("ridge") is at ``rows x q`` ~ peak FLOP/s / bandwidth x
bytes per parameter / 2 (about 295 tokens for bf16 on an H100 SXM): a no-cache diffusion forward
over a long canvas, or a large batch, is compute-bound, costs ~``q`` x an AR step, and the speed-up
shrinks toward (tokens per pass) / (tokens recomputed per pass). Ignored (so projections are ideal,
best-case for both sides): kernel launch and framework overheads, sampling and host bookkeeping,
activation traffic, KV-cache writes, efficiency below datasheet peak, the attention saving of a
causal mask (counted as full), tensor parallelism and speculative tricks.

Hardware figures (dense bf16 Tensor Core peak is half the datasheet's "with sparsity" figure):

* NVIDIA H100 SXM: 3.35 TB/s HBM3, 1,979 TFLOP/s bf16 with sparsity -> 989 dense.
  Source: NVIDIA H100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h100/
* NVIDIA H200 SXM: 4.8 TB/s HBM3e, same Tensor Cores (989 TFLOP/s dense bf16).
  Source: NVIDIA H200 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h200/

Model shape: LLaDA-8B (Nie et al. 2025; its published config: 32 layers, d_model 4096, 32 attention
heads of 128 with no grouped-query sharing), 8B parameters in bf16. Its AR twin is "an 8B AR model
of the same shape on the same GPU", decoding one token per forward with a KV cache.

Nothing here imports torch at module level (the viz layer imports these types); only
``measure_forward_costs`` does, when called.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .sampler.config import CACHE_MODES, CACHE_TEXT, SUFFIX_WINDOW

# -- the trace a race records ---------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardCall:
    """One call into the network: ``rows`` sequences, each feeding ``query_tokens`` new positions
    and attending to ``context_tokens`` cached keys/values (0 without a cache); ``seconds`` of wall
    time inside the call."""

    rows: int
    query_tokens: int
    context_tokens: int
    seconds: float


@dataclass(frozen=True)
class StepRecord:
    """One step of one lane, as the race measured it.

    seconds: wall time of the whole step (model + sampler bookkeeping): what the race clock adds.
    forwards: forward evaluations the step added (NFE; classifier-free guidance counts 2).
    committed: positions unmasked by the step. calls: the network calls made during the step.
    """

    seconds: float
    forwards: int
    committed: int
    calls: tuple[ForwardCall, ...]


@dataclass(frozen=True)
class LaneCost:
    """A lane's totals so far: forwards (NFE), tokens written, seconds (race clock), model seconds."""

    forwards: int
    tokens: int
    seconds: float
    model_seconds: float

    @property
    def ms_per_forward(self) -> float:
        """Mean milliseconds per forward, bookkeeping included (what the race clock charges)."""
        return 1000.0 * self.seconds / self.forwards if self.forwards else math.nan

    @property
    def model_ms_per_forward(self) -> float:
        """Mean milliseconds per forward inside the network only (compare with ``ForwardCosts``)."""
        return 1000.0 * self.model_seconds / self.forwards if self.forwards else math.nan

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / self.forwards if self.forwards else math.nan


def lane_cost(trace: Iterable[StepRecord], tokens: int | None = None) -> LaneCost:
    """Totals of a lane's trace; ``tokens`` (written so far) defaults to the sum of commits."""
    trace = list(trace)
    committed = sum(step.committed for step in trace)
    return LaneCost(
        forwards=sum(step.forwards for step in trace),
        tokens=committed if tokens is None else int(tokens),
        seconds=sum(step.seconds for step in trace),
        model_seconds=sum(call.seconds for step in trace for call in step.calls),
    )


# -- break-even ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakEven:
    """cost_ratio = diffusion ms per forward / AR ms per forward = the tokens per pass needed to win
    (AR emits exactly one per forward); achieved = the diffusion run's tokens per pass;
    speedup = achieved / needed = AR time / diffusion time for the same number of tokens."""

    diffusion_ms: float
    ar_ms: float
    achieved: float

    @property
    def cost_ratio(self) -> float:
        return self.diffusion_ms / self.ar_ms

    @property
    def needed(self) -> float:
        return self.cost_ratio

    @property
    def speedup(self) -> float:
        return self.achieved / self.needed

    @property
    def wins(self) -> bool:
        return self.achieved > self.needed


def break_even(diffusion_ms_per_forward: float, ar_ms_per_forward: float, tokens_per_forward: float) -> BreakEven:
    """The break-even of a diffusion lane against an AR lane (see the module docstring for why the
    tokens per pass needed equals the cost ratio). Every argument must be a positive finite number."""
    for field, value in (
        ("diffusion_ms_per_forward", diffusion_ms_per_forward),
        ("ar_ms_per_forward", ar_ms_per_forward),
        ("tokens_per_forward", tokens_per_forward),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{field} must be a positive finite number, got {value!r}")
    return BreakEven(float(diffusion_ms_per_forward), float(ar_ms_per_forward), float(tokens_per_forward))


def race_break_even(diffusion: LaneCost, ar: LaneCost) -> BreakEven:
    """Break-even from two lanes of the same race: mean cost per forward of each, this run's tokens
    per pass. The AR lane's tokens per pass is 1, so ``speedup`` is the race's time ratio."""
    ar_ms_per_token = ar.ms_per_forward / ar.tokens_per_forward  # = ms per forward for an AR lane
    return break_even(diffusion.ms_per_forward, ar_ms_per_token, diffusion.tokens_per_forward)


# -- measured on this machine -------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardCosts:
    """Median milliseconds of the forwards a race makes, measured on this machine.

    ar_step_ms: one KV-cached AR decode step (1 query token, context = prompt + length / 2, the
        run's mean context), or one full forward for an AR model without a cache.
    full_ms: a block's first diffusion forward: over the whole canvas without a cache (every step)
        or with the prefix / dual cache (the refresh, which projects only the block onto the
        vocabulary); with the window cache, the previous block, the block and the suffix window
        against the finished slots before them.
    cached_ms: one cached diffusion step (prefix: the middle block and everything after it;
        dual: the block alone; window: the block against the finished slots and the suffix window);
        equals ``full_ms`` when ``cache`` is None.
    """

    length: int
    prompt_tokens: int
    cache: str | None
    block: int
    ar_step_ms: float
    full_ms: float
    cached_ms: float

    def forward_ms(self, tokens_per_pass: float) -> float:
        """Mean ms per diffusion forward at ``tokens_per_pass``: a block of B slots takes s = B / k
        steps, the first a full refresh, so the mean is (F + (s - 1) C) / s (= F without a cache)."""
        steps = max(1.0, self.block / tokens_per_pass)
        return (self.full_ms + (steps - 1) * self.cached_ms) / steps

    @property
    def break_even(self) -> float:
        """Tokens per pass where diffusion ties: k x a = forward_ms(k), i.e. per block of B tokens
        F + (B / k - 1) C = B a, so k* = B C / (B a - F + C) (= C / a without a cache). ``inf`` if
        even one pass per block (k = B) loses: the refresh alone costs more than B AR steps."""
        B, F, C, a = self.block, self.full_ms, self.cached_ms, self.ar_step_ms
        denominator = B * a - F + C
        if denominator <= 0:
            return math.inf
        k = B * C / denominator
        return k if k <= B else math.inf


_MEASURED: dict[tuple, ForwardCosts] = {}
_MEASURED_LOCK = threading.Lock()


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):  # first calls pay one-time costs (allocator, kernels, caches)
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def measure_forward_costs(
    diffusion,
    ar,
    length: int,
    cache: str | None = None,
    *,
    block: int = 32,
    prompt_tokens: int = 8,
    warmup: int = 2,
    repeats: int = 5,
    suffix_window: int = SUFFIX_WINDOW,
) -> ForwardCosts:
    """Time one AR decode step and the diffusion forwards a race at ``length`` makes, on this machine.

    The canvases hold arbitrary non-mask token ids (cost does not depend on content). Results are
    cached per (model pair, length, cache, block, prompt tokens, torch threads), so the UI can call
    this on every race; the first call costs ``(warmup + repeats) x`` a few forwards.
    """
    import torch

    if cache is not None and cache not in CACHE_MODES:
        raise ValueError(f"cache must be None or one of {', '.join(CACHE_MODES)}, got {cache!r}")
    for name, value, low in (("block", block, 1), ("prompt_tokens", prompt_tokens, 1), ("warmup", warmup, 0),
                             ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    limit = min(diffusion.max_length, ar.max_length) - prompt_tokens
    if not isinstance(length, int) or not 1 <= length <= limit:
        raise ValueError(f"length must be an integer in [1, {limit}] (model max length minus prompt), got {length!r}")
    if cache is not None and not getattr(diffusion, "supports_cache", False):
        raise ValueError(f"cache must be None for model {diffusion.name!r} (no key/value cache)")
    block = min(block, length)
    key = (id(diffusion), diffusion.name, id(ar), ar.name, length, cache, block, prompt_tokens, suffix_window,
           torch.get_num_threads())
    with _MEASURED_LOCK:
        if key in _MEASURED:
            return _MEASURED[key]

    total = prompt_tokens + length
    generator = torch.Generator().manual_seed(0)

    def canvas(model) -> torch.Tensor:
        ids = torch.randint(0, model.vocab_size, (1, total), generator=generator)
        return ids.masked_fill(ids == model.mask_id, (model.mask_id + 1) % model.vocab_size).to(model.device)

    def sync(model) -> None:
        if getattr(model.device, "type", "cpu") == "cuda":
            torch.cuda.synchronize(model.device)

    with torch.inference_mode():
        x_ar = canvas(ar)
        if getattr(ar, "supports_cache", False):
            context = prompt_tokens + length // 2
            _, ar_cache = ar.forward_cached(x_ar[:, :context])
            last = torch.zeros(1, dtype=torch.long, device=x_ar.device)

            def ar_step():
                ar.forward_cached(x_ar[:, context : context + 1], ar_cache, logits_at=last)
                sync(ar)
        else:

            def ar_step():
                ar.logits(x_ar)
                sync(ar)

        ar_ms = _median_ms(ar_step, warmup, repeats)

        x = canvas(diffusion)
        blocks = math.ceil(length / block)
        lo = prompt_tokens + (blocks // 2) * block  # the middle block: the run's mean suffix
        hi = min(lo + block, total)
        in_block = torch.arange(lo, hi, device=x.device)

        _, everything = diffusion.forward_cached(x) if cache is not None else (None, None)
        suffix = torch.arange(hi, total if cache != "window" else min(total, hi + suffix_window), device=x.device)

        def cached_keys(keep: torch.Tensor) -> list:
            return [(k[:, :, keep], v[:, :, keep]) for k, v in everything]

        if cache == "window":  # the block's first step: the previous block, the block and the window, once
            start = lo - block if lo > prompt_tokens else 0  # the first block computes the prompt too
            finished = cached_keys(torch.arange(start, device=x.device))
            new = torch.cat((torch.arange(start, hi, device=x.device), suffix)).unsqueeze(0)

            def full():
                diffusion.forward_cached(x[:, new[0]], finished, new, logits_at=in_block - start)
                sync(diffusion)
        else:

            def full():  # the sampler's call: with a cache, a refresh that keeps the block's logits only
                if cache is None:
                    diffusion.logits(x)
                else:
                    diffusion.forward_cached(x, logits_at=in_block)
                sync(diffusion)

        full_ms = _median_ms(full, warmup, repeats)
        cached_ms = full_ms
        if cache is not None:
            keep = torch.arange(lo, device=x.device)
            if cache != "prefix":
                keep = torch.cat((keep, suffix))
            kept = cached_keys(keep)
            positions = torch.arange(lo, total if cache == "prefix" else hi, device=x.device).unsqueeze(0)

            def cached():
                diffusion.forward_cached(x[:, positions[0]], kept, positions, logits_at=in_block - lo)
                sync(diffusion)

            cached_ms = _median_ms(cached, warmup, repeats)

    costs = ForwardCosts(length, prompt_tokens, cache, block, ar_ms, full_ms, cached_ms)
    with _MEASURED_LOCK:
        _MEASURED[key] = costs
    return costs


# -- projection: the same trace on a large model and a real GPU -------------------------------------


@dataclass(frozen=True)
class Hardware:
    """A GPU for the roofline: bytes/s of memory bandwidth, dense FLOP/s at the model's precision."""

    name: str
    memory_bandwidth: float
    peak_flops: float
    source: str


@dataclass(frozen=True)
class LargeModel:
    """A transformer's shape for the roofline: parameters, bytes each, layers, d_model, and the
    width of its keys (= values) per token and layer (KV heads x head dim)."""

    name: str
    parameters: float
    bytes_per_parameter: float
    layers: int
    d_model: int
    kv_width: int

    @property
    def weight_bytes(self) -> float:
        return self.parameters * self.bytes_per_parameter

    @property
    def kv_bytes_per_token(self) -> float:
        """Keys and values of one token in every layer."""
        return 2 * self.layers * self.kv_width * self.bytes_per_parameter


H100_SXM = Hardware(
    name="one NVIDIA H100 SXM (3.35 TB/s HBM3, 989 TFLOP/s dense bf16)",
    memory_bandwidth=3.35e12,
    peak_flops=989e12,
    source="NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100): 3.35 TB/s, "
    "1,979 TFLOP/s bf16 with sparsity = 989 dense",
)
H200_SXM = Hardware(
    name="one NVIDIA H200 SXM (4.8 TB/s HBM3e, 989 TFLOP/s dense bf16)",
    memory_bandwidth=4.8e12,
    peak_flops=989e12,
    source="NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): 4.8 TB/s, "
    "1,979 TFLOP/s bf16 with sparsity = 989 dense",
)
LLADA_8B = LargeModel(
    name="LLaDA-8B-class (8B parameters, bf16)",
    parameters=8e9,
    bytes_per_parameter=2,
    layers=32,
    d_model=4096,
    kv_width=32 * 128,
)
AR_8B = LargeModel(
    name="an 8B AR model of the same shape (bf16, KV cache)",
    parameters=8e9,
    bytes_per_parameter=2,
    layers=32,
    d_model=4096,
    kv_width=32 * 128,
)
HARDWARE = {"h100-sxm": H100_SXM, "h200-sxm": H200_SXM}


@dataclass(frozen=True)
class ForwardTime:
    """Projected seconds of one forward: the memory and compute terms and which one won."""

    memory_s: float
    compute_s: float

    @property
    def seconds(self) -> float:
        return max(self.memory_s, self.compute_s)

    @property
    def compute_bound(self) -> bool:
        return self.compute_s > self.memory_s


def forward_time(model: LargeModel, hardware: Hardware, rows: int, query_tokens: int, context_tokens: int) -> ForwardTime:
    """The roofline time of one forward (formula in the module docstring)."""
    for field, value, low in (("rows", rows, 1), ("query_tokens", query_tokens, 1), ("context_tokens", context_tokens, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{field} must be an integer >= {low}, got {value!r}")
    memory = (model.weight_bytes + rows * context_tokens * model.kv_bytes_per_token) / hardware.memory_bandwidth
    flops = 2 * model.parameters * rows * query_tokens
    flops += 4 * model.layers * model.d_model * rows * query_tokens * (query_tokens + context_tokens)
    return ForwardTime(memory, flops / hardware.peak_flops)


def ridge_tokens(model: LargeModel, hardware: Hardware) -> float:
    """Tokens per forward (rows x query) above which a forward is compute-bound, attention ignored:
    2 P T / F = W / BW  <=>  T = F W / (2 P BW)."""
    return hardware.peak_flops * model.weight_bytes / (2 * model.parameters * hardware.memory_bandwidth)


@dataclass(frozen=True)
class LaneProjection:
    """A lane's trace re-timed: projected seconds, forwards, and how many of them were compute-bound."""

    seconds: float
    forwards: int
    compute_bound: int
    tokens: int

    @property
    def ms_per_forward(self) -> float:
        return 1000.0 * self.seconds / self.forwards if self.forwards else math.nan


def project_calls(calls: Iterable[ForwardCall], tokens: int, model: LargeModel, hardware: Hardware, batch: int = 1) -> LaneProjection:
    """Re-time network calls on ``model`` / ``hardware``; ``batch`` identical sequences per call."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    seconds, forwards, bound = 0.0, 0, 0
    for call in calls:
        projected = forward_time(model, hardware, call.rows * batch, call.query_tokens, call.context_tokens)
        seconds += projected.seconds
        forwards += 1
        bound += projected.compute_bound
    return LaneProjection(seconds, forwards, bound, int(tokens))


def trace_calls(trace: Iterable[StepRecord]) -> list[ForwardCall]:
    return [call for step in trace for call in step.calls]


@dataclass(frozen=True)
class RaceProjection:
    """Both lanes of one race re-timed on a large model and GPU; ``speedup`` = AR s / diffusion s."""

    model: LargeModel
    ar_model: LargeModel
    hardware: Hardware
    batch: int
    ar: LaneProjection
    diffusion: LaneProjection

    @property
    def speedup(self) -> float:
        return self.ar.seconds / self.diffusion.seconds


def project_race(
    diffusion_calls: Sequence[ForwardCall],
    ar_calls: Sequence[ForwardCall],
    tokens: int,
    *,
    model: LargeModel = LLADA_8B,
    ar_model: LargeModel = AR_8B,
    hardware: Hardware = H100_SXM,
    batch: int = 1,
) -> RaceProjection:
    """Project both lanes of a race (their recorded calls; ``tokens`` each wrote) onto ``hardware``."""
    if not diffusion_calls or not ar_calls:
        raise ValueError("diffusion_calls and ar_calls must each hold at least one forward call")
    return RaceProjection(
        model, ar_model, hardware, batch,
        ar=project_calls(ar_calls, tokens, ar_model, hardware, batch),
        diffusion=project_calls(diffusion_calls, tokens, model, hardware, batch),
    )


def synthetic_calls(
    prompt_tokens: int, length: int, tokens_per_pass: float, cache: str | None, block: int = 32,
    suffix_window: int = SUFFIX_WINDOW,
) -> list[ForwardCall]:
    """The calls a diffusion run would make at a steady ``tokens_per_pass`` (for what-if curves):
    per block of B slots, ceil(B / k) forwards; the first of a prefix- or dual-cached block is a full
    refresh; the window cache's first computes the slots finished since the last block, the block and
    ``suffix_window`` masks, against the slots finished before (``sampler.cache``)."""
    if not tokens_per_pass >= 1:
        raise ValueError(f"tokens_per_pass must be >= 1, got {tokens_per_pass!r}")
    total, calls, finished = prompt_tokens + length, [], 0
    for lo in range(prompt_tokens, total, block):
        hi = min(lo + block, total)
        window = min(total, hi + suffix_window) - hi
        steps = math.ceil((hi - lo) / tokens_per_pass)
        for step in range(steps):
            if cache == "window":
                first = step == 0
                calls.append(ForwardCall(1, hi - finished + window, finished, 0.0) if first
                             else ForwardCall(1, hi - lo, lo + window, 0.0))
            elif cache is None or step == 0:
                calls.append(ForwardCall(1, total, 0, 0.0))
            elif cache == "prefix":
                calls.append(ForwardCall(1, total - lo, lo, 0.0))
            else:
                calls.append(ForwardCall(1, hi - lo, total - (hi - lo), 0.0))
        finished = lo
    return calls


def autoregressive_calls(prompt_tokens: int, length: int) -> list[ForwardCall]:
    """The calls of KV-cached AR decoding: a prefill of the prompt (which predicts the first token),
    then one single-token forward per further token, attending to everything before it."""
    calls = [ForwardCall(1, prompt_tokens, 0, 0.0)]
    calls += [ForwardCall(1, 1, prompt_tokens + i - 1, 0.0) for i in range(1, length)]
    return calls


# -- where the "5-10x" holds: scenarios and a what-if curve ------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One labelled projection; ``tokens_per_forward`` = mean tokens the diffusion network computes
    per forward (rows x query), the number that decides memory- vs compute-bound."""

    label: str
    tokens_per_pass: float
    tokens_per_forward: float
    projection: RaceProjection


def _processed(calls: Sequence[ForwardCall], batch: int) -> float:
    return statistics.fmean(call.rows * batch * call.query_tokens for call in calls)


def projection_scenarios(
    diffusion_calls: Sequence[ForwardCall],
    ar_calls: Sequence[ForwardCall],
    tokens: int,
    *,
    prompt_tokens: int,
    cache: str | None,
    block: int = 32,
    suffix_window: int = SUFFIX_WINDOW,
    large_batch: int = 64,
    model: LargeModel = LLADA_8B,
    ar_model: LargeModel = AR_8B,
    hardware: Hardware = H100_SXM,
) -> list[Scenario]:
    """This run re-timed, then three variations that move it across the roofline:

    1. the run as recorded, one sequence;
    2. the same run for ``large_batch`` sequences at once (both lanes batched): more tokens per
       forward, so diffusion forwards turn compute-bound first;
    3. the same tokens per pass with the other cache setting (none <-> dual): without a cache every
       forward recomputes the whole canvas;
    4. one token per pass with the run's cache: no parallelism, so nothing to gain.
    """
    achieved = tokens / len(diffusion_calls)
    kwargs = {"model": model, "ar_model": ar_model, "hardware": hardware}
    other = "dual" if cache is None else None
    other_calls = synthetic_calls(prompt_tokens, tokens, max(1.0, achieved), other, block, suffix_window)
    one_calls = synthetic_calls(prompt_tokens, tokens, 1.0, cache, block, suffix_window)
    cases = [
        (f"this run ({CACHE_TEXT[cache]}), one sequence", achieved, diffusion_calls, 1),
        (f"this run, a batch of {large_batch} sequences", achieved, diffusion_calls, large_batch),
        (f"{achieved:.1f} tokens per pass with {CACHE_TEXT[other]}", achieved, other_calls, 1),
        (f"1 token per pass ({CACHE_TEXT[cache]})", 1.0, one_calls, 1),
    ]
    return [
        Scenario(label, k, _processed(calls, batch), project_race(calls, ar_calls, tokens, batch=batch, **kwargs))
        for label, k, calls, batch in cases
    ]


WHAT_IF_TOKENS_PER_PASS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@functools.lru_cache(maxsize=256)  # pure and ~30 ms at 512 tokens: a race tab redraws the same curves
def speedup_curve(
    prompt_tokens: int,
    length: int,
    cache: str | None,
    *,
    block: int = 32,
    suffix_window: int = SUFFIX_WINDOW,
    batch: int = 1,
    tokens_per_pass: tuple[float, ...] = WHAT_IF_TOKENS_PER_PASS,
    model: LargeModel = LLADA_8B,
    ar_model: LargeModel = AR_8B,
    hardware: Hardware = H100_SXM,
) -> tuple[tuple[float, float], ...]:
    """(tokens per pass, projected speed-up over the AR model) for a steady diffusion run."""
    ar_calls = autoregressive_calls(prompt_tokens, length)
    points = []
    for k in tokens_per_pass:
        if k > min(block, length):
            continue
        calls = synthetic_calls(prompt_tokens, length, k, cache, block, suffix_window)
        projection = project_race(calls, ar_calls, length, model=model, ar_model=ar_model, hardware=hardware, batch=batch)
        points.append((float(k), projection.speedup))
    return tuple(points)


# -- everything the race tab shows about one diffusion lane ------------------------------------------


@dataclass(frozen=True)
class LaneExplanation:
    """Measured break-even (None until both lanes have made a forward) and the labelled projection."""

    cost: LaneCost
    break_even: BreakEven | None
    scenarios: list[Scenario]
    curves: dict[str, tuple[tuple[float, float], ...]]

    @property
    def run_point(self) -> tuple[float, float] | None:
        """(tokens per pass, projected speed-up) of this run as recorded, for ``speedup_figure``."""
        if not self.scenarios:
            return None
        return self.scenarios[0].tokens_per_pass, self.scenarios[0].projection.speedup


def explain_lane(
    diffusion_trace: Sequence[StepRecord],
    *,
    tokens: int,
    prompt_tokens: int,
    length: int,
    cache: str | None,
    block: int = 32,
    suffix_window: int = SUFFIX_WINDOW,
    ar_trace: Sequence[StepRecord] | None = None,
    ar_tokens: int | None = None,
    ar_ms_per_forward: float | None = None,
    hardware: Hardware = H100_SXM,
    large_batch: int = 64,
) -> LaneExplanation:
    """One diffusion lane explained, from the race's own traces.

    The AR side is the AR lane's trace (``ar_trace`` / ``ar_tokens``: same race, same clock), or,
    in a race without an AR lane, ``ar_ms_per_forward`` (e.g. ``measure_forward_costs(...).ar_step_ms``,
    then compared with the lane's network-only ms per forward, like with like). The projection uses
    the recorded calls of both lanes (a synthetic KV-cached AR run of ``length`` tokens when there
    is no AR lane). ``tokens`` = slots the diffusion lane has written so far.
    """
    cost = lane_cost(diffusion_trace, tokens)
    verdict = None
    if ar_trace is not None:
        ar_cost = lane_cost(ar_trace, ar_tokens)
        if cost.forwards and cost.tokens and ar_cost.forwards and ar_cost.tokens:
            verdict = race_break_even(cost, ar_cost)
    elif ar_ms_per_forward is not None and cost.forwards and cost.tokens:
        verdict = break_even(cost.model_ms_per_forward, ar_ms_per_forward, cost.tokens_per_forward)
    calls = trace_calls(diffusion_trace)
    finished_ar = ar_trace is not None and ar_tokens == length
    ar_calls = trace_calls(ar_trace) if finished_ar else autoregressive_calls(prompt_tokens, length)
    scenarios = []
    if calls and cost.tokens == length:  # project finished runs only: a partial trace has no total
        scenarios = projection_scenarios(calls, ar_calls, length, prompt_tokens=prompt_tokens, cache=cache,
                                         block=block, suffix_window=suffix_window, large_batch=large_batch,
                                         hardware=hardware)
    same = {"block": block, "suffix_window": suffix_window, "hardware": hardware}
    curves = {
        f"{CACHE_TEXT[cache]}, one sequence": speedup_curve(prompt_tokens, length, cache, **same),
        f"{CACHE_TEXT[cache]}, batch of {large_batch}": speedup_curve(prompt_tokens, length, cache, batch=large_batch,
                                                                      **same),
    }
    if cache is not None:
        curves["no cache, one sequence"] = speedup_curve(prompt_tokens, length, None, block=block, hardware=hardware)
    return LaneExplanation(cost, verdict, scenarios, curves)


# -- command line: the projection table the README quotes ---------------------------------------------


def projection_table(
    prompt_tokens: int = 16,
    lengths: Sequence[int] = (256, 512),
    tokens_per_pass: tuple[float, ...] = (1, 2, 4, 8, 16),
    hardware: Hardware = H100_SXM,
    large_batch: int = 64,
) -> str:
    """Markdown: projected speed-up over the AR model per setting (rows) and tokens per pass (columns)."""
    settings = [("dual cache", "dual", 1), (f"window cache ({SUFFIX_WINDOW})", "window", 1), ("no cache", None, 1),
                (f"dual cache, batch {large_batch}", "dual", large_batch),
                (f"window cache ({SUFFIX_WINDOW}), batch {large_batch}", "window", large_batch),
                (f"no cache, batch {large_batch}", None, large_batch)]
    head = "| length | setting | " + " | ".join(f"{k:g} tok/pass" for k in tokens_per_pass) + " |"
    lines = [
        f"Projected speed-up of {LLADA_8B.name} over {AR_8B.name}, {hardware.name}; prompt {prompt_tokens} "
        f"tokens, blocks of 32, steady tokens per pass (roofline: see dlm_core/speed.py).",
        "",
        head,
        "| ---: | --- |" + " ---: |" * len(tokens_per_pass),
    ]
    for length in lengths:
        for name, cache, batch in settings:
            curve = dict(speedup_curve(prompt_tokens, length, cache, batch=batch, tokens_per_pass=tokens_per_pass,
                                       hardware=hardware))
            cells = [f"{curve[k]:.2f}x" if k in curve else "" for k in tokens_per_pass]
            lines.append(f"| {length} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dlm_core.speed", description="Print the roofline projection table.")
    parser.add_argument("--hardware", choices=sorted(HARDWARE), default="h100-sxm")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args(argv)
    print(projection_table(args.prompt_tokens, args.lengths, hardware=HARDWARE[args.hardware]))


if __name__ == "__main__":
    main()
