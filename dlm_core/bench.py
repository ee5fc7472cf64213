"""Diffusion vs autoregressive decoding speed and quality: ``python -m dlm_core.bench``.

For each generation length (prompt of fixed token length) and each method, on the built-in pair:

* ``ar+kv``            the autoregressive twin, one token per forward, KV cache;
* ``diff 1/step``      diffusion, ``low_confidence``, steps = length (one token per forward);
* ``diff threshold``   Fast-dLLM confidence-threshold parallel decoding, no cache;
* ``thr+prefix``       the same with Fast-dLLM's prefix KV cache;
* ``thr+dual``         the same with the dual (prefix + suffix) cache.

All diffusion methods decode in semi-autoregressive blocks of ``--block`` tokens (Fast-dLLM's
setting; caches refresh at block boundaries). Timing hygiene: before any timed run of a length,
every method decodes one prompt untimed (a warm-up that absorbs one-time costs: lazy init, allocator
growth, first-call dispatch); each prompt is then timed ``--repeats`` times and its median taken;
reported times are the mean over prompts of those medians. All decoding runs under
``torch.inference_mode`` with the same thread count, the AR twin through its exact KV cache (one new
token per forward), so the race is fair to both sides.

Reported per length and method: wall time, NFE, tokens per forward, milliseconds per forward (wall
time / NFE: one AR KV step or one diffusion forward, sampler bookkeeping included: the cost the race
pays), speed-up vs ``ar+kv``, and quality with the same prompts and seeds for every method:
generative perplexity of the produced text under the AR twin, and the token entropy of the samples
(low entropy flags degenerate repetition); for the cached methods also their token agreement with
the uncached threshold run. Extra rows: the share of time spent outside the model's forward at 128
tokens, and throughput (generated tokens/s) at batch 1 vs 8.

Writes ``--out``/bench.md and bench.json. Timings depend on the machine: the header says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from .models.builtin import ASSETS_DIR, load_canvas
from .quality import generative_perplexity, token_entropy
from .sampler import SamplerConfig, denoise, denoise_batch
from .sampler.autoregressive import decode_autoregressive, decode_autoregressive_batch

METHODS = ("ar+kv", "diff 1/step", "diff threshold", "thr+prefix", "thr+dual")
CACHES = {"thr+prefix": "prefix", "thr+dual": "dual"}


def fixed_length_prompts(model, count: int, tokens: int) -> list[str]:
    """``count`` prompts of exactly ``tokens`` tokens: speeches from the held-out plays, cut by tokens."""
    from .data import load_plays, split_plays

    _, validation = split_plays(load_plays())
    text = "\n".join(validation.values())
    prompts, start = [], 0
    while len(prompts) < count:
        start = text.index(":\n", start + 1)
        speech = text[text.rfind("\n\n", 0, start) + 2 :]
        ids = model.encode(speech[:2000])[:tokens]
        candidate = model.decode(ids)
        if len(model.encode(candidate)) == tokens and "[MASK" not in candidate:
            prompts.append(candidate)
        start += 400
    return prompts


def method_config(method: str, length: int, args) -> SamplerConfig:
    """The sampler settings of one benchmark method at one length."""
    if method == "ar+kv":
        return SamplerConfig(gen_length=length, strategy="left_to_right", temperature=args.temperature, seed=args.seed)
    common = dict(gen_length=length, steps=length, block_length=min(args.block, length),
                  temperature=args.temperature, seed=args.seed)
    if method == "diff 1/step":
        return SamplerConfig(strategy="low_confidence", **common)
    return SamplerConfig(strategy="threshold", threshold=args.threshold, cache=CACHES.get(method), **common)


def timed_run(model, prompt: str, config: SamplerConfig) -> tuple[object, float]:
    """Decode one prompt to the end; (final state, wall seconds). AR models take their KV-cached decoder."""
    started = time.perf_counter()
    with torch.inference_mode():
        if model.kind == "autoregressive":
            states = decode_autoregressive(model, prompt, config)
        else:
            states = denoise(model, prompt, config)
        final = None
        for final in states:  # noqa: B007
            pass
    return final, time.perf_counter() - started


def timed_median(model, prompt: str, config: SamplerConfig, repeats: int) -> tuple[object, float]:
    """(final state of the first repeat, median wall seconds over ``repeats`` runs). Same seed every
    repeat, so every repeat produces the same tokens; only the clock varies."""
    runs = [timed_run(model, prompt, config) for _ in range(repeats)]
    return runs[0][0], statistics.median(seconds for _, seconds in runs)


def warm_up(model, prompt: str, config: SamplerConfig) -> None:
    """One untimed run, so the first timed method does not absorb one-time costs."""
    timed_run(model, prompt, config)


def measure(ar, diffusion, prompts: list[str], args) -> list[dict]:
    rows = []
    for length in args.lengths:
        for method in METHODS:
            warm_up(ar if method == "ar+kv" else diffusion, prompts[0], method_config(method, length, args))
        finals: dict[str, list] = {}
        for method in METHODS:
            model, config = (ar if method == "ar+kv" else diffusion), method_config(method, length, args)
            runs = [timed_median(model, prompt, config, args.repeats) for prompt in prompts]
            states = [state for state, _ in runs]
            finals[method] = states
            samples = [(s.tokens[: s.prompt_length].tolist(), s.tokens[s.prompt_length :].tolist()) for s in states]
            row = {
                "length": length,
                "method": method,
                "median_s": statistics.mean(seconds for _, seconds in runs),
                "nfe": statistics.mean(s.nfe for s in states),
                "ms_per_forward": statistics.mean(1000 * seconds / s.nfe for s, seconds in runs),
                "tokens_per_forward": statistics.mean(length / s.nfe for s in states),
                "gen_ppl": generative_perplexity(ar, samples),
                "entropy": statistics.mean(token_entropy(g) for _, g in samples),
            }
            if method.startswith("thr+"):
                agree = [np.mean(a.tokens == b.tokens) for a, b in zip(states, finals["diff threshold"], strict=True)]
                row["agreement"] = float(np.mean(agree))
            rows.append(row)
            print(json.dumps(row), flush=True)
        base = next(r["median_s"] for r in rows if r["length"] == length and r["method"] == "ar+kv")
        for r in rows:
            if r["length"] == length:
                r["speedup_vs_ar"] = base / r["median_s"]
    return rows


def forward_share(diffusion, prompt: str, args) -> dict:
    """Share of wall time spent inside the model's forward for a 128-token diffusion run."""
    spent = [0.0]
    original = diffusion.logits

    def timed(*a, **k):
        started = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent[0] += time.perf_counter() - started

    result = {}
    for name, strategy, steps in (("diff 1/step", "low_confidence", 128), ("diff threshold", "threshold", 128)):
        config = SamplerConfig(gen_length=128, steps=steps, block_length=min(args.block, 128), strategy=strategy,
                               threshold=args.threshold, temperature=args.temperature, seed=args.seed)
        warm_up(diffusion, prompt, config)
        spent[0] = 0.0
        diffusion.logits = timed
        try:
            _, total = timed_run(diffusion, prompt, config)
        finally:
            del diffusion.logits  # back to the class method
        result[name] = {"total_s": total, "forward_s": spent[0], "non_model_share": 1 - spent[0] / total}
    return result


def throughput(ar, diffusion, prompts: list[str], args) -> list[dict]:
    """Generated tokens per second at batch 1 vs batch ``len(prompts)`` (one forward per step for all)."""
    length, rows = args.batch_length, []
    for method in ("ar+kv", "diff threshold", "thr+dual"):
        for batch in (1, len(prompts)):
            group, config = prompts[:batch], method_config(method, length, args)

            def run_batch(group=group, config=config, method=method) -> float:
                started = time.perf_counter()
                with torch.inference_mode():
                    if method == "ar+kv":
                        states = decode_autoregressive_batch(ar, group, config)
                    else:
                        states = denoise_batch(diffusion, group, config)
                    for _ in states:
                        pass
                return time.perf_counter() - started

            run_batch()  # warm-up
            seconds = statistics.median(run_batch() for _ in range(args.repeats))
            rows.append({"method": method, "batch": batch, "length": length, "seconds": seconds,
                         "tokens_per_s": batch * length / seconds})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"Machine: {report['machine']}; torch {report['torch']}, {report['threads']} threads; "
        f"prompt {report['prompt_tokens']} tokens x {report['prompts']} prompts, median of {report['repeats']} "
        f"repeats after a warm-up run of every method; block {report['block']}, threshold {report['threshold']}, "
        f"temperature {report['temperature']}.",
        "",
        "| length | method | median s | NFE | ms/forward | tokens/forward | speed-up vs AR | gen PPL (AR twin) | entropy | agreement |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["rows"]:
        agreement = f"{r['agreement']:.1%}" if "agreement" in r else ""
        lines.append(
            f"| {r['length']} | {r['method']} | {r['median_s']:.3f} | {r['nfe']:.1f} | {r['ms_per_forward']:.2f} | "
            f"{r['tokens_per_forward']:.2f} | "
            f"{r['speedup_vs_ar']:.2f}x | {r['gen_ppl']:.1f} | {r['entropy']:.2f} | {agreement} |"
        )
    lines += ["", "Time outside the model's forward (sampler bookkeeping), 128 tokens:", ""]
    for name, share in report["forward_share"].items():
        lines.append(f"- {name}: {share['non_model_share']:.1%} of {share['total_s']:.2f} s")
    lines += ["", "| method | batch | length | seconds | generated tokens/s |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in report["throughput"]:
        lines.append(f"| {r['method']} | {r['batch']} | {r['length']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm_core.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ar", default=str(ASSETS_DIR / "canvas-ar"))
    parser.add_argument("--diffusion", default=str(ASSETS_DIR / "canvas-diffusion"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ar, diffusion = load_canvas(args.ar), load_canvas(args.diffusion)
    prompts = fixed_length_prompts(diffusion, max(args.prompts, args.batch), args.prompt_tokens)
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
        "torch": torch.__version__,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "prompts": args.prompts,
        "repeats": args.repeats,
        "block": args.block,
        "threshold": args.threshold,
        "temperature": args.temperature,
        "rows": measure(ar, diffusion, prompts[: args.prompts], args),
        "forward_share": forward_share(diffusion, prompts[0], args),
        "throughput": throughput(ar, diffusion, prompts[: args.batch], args),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
