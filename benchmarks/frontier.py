"""The quality-parallelism frontier: how many tokens per forward pass a diffusion model can commit
before its text gets worse, and what that buys against the AR twin's wall time.

    python benchmarks/frontier.py                                   # shipped model, ~3-5 min on 2 cores
    python benchmarks/frontier.py --models assets/canvas-diffusion assets/canvas-parallel --seeds 2
    python benchmarks/frontier.py --length 64 --prompts 1 --thresholds 0.5 --gammas 1 --fixed 2   # smoke test

For every model folder of ``--models``, every key/value cache of ``--caches`` (the first is the
reference's; ``window`` keeps ``--suffix-window`` masks after the block) and every decoding setting
(blocks of ``--block``, temperature 1.0 and top-p 0.95 as in the app):

* ``low_confidence`` with a fixed number of steps, ``--fixed`` tokens per step (1 and 2 by default),
  for each ``--order-temperature`` (default: the app's, ``BUILTIN_ORDER_TEMPERATURE``; the first one
  listed is the reference's, other values are labelled "order T ..."): how much randomness the order of
  commits gets (0: most confident first, LLaDA);
* ``threshold`` (Fast-dLLM) for each of ``--thresholds``;
* ``entropy_bound`` (EB-sampler) for each of ``--gammas``;

it samples ``--length`` tokens after the first ``--prompts`` of ``dlm_core.evaluate.SAMPLE_PROMPTS``
with seeds 0..``--seeds``-1 and reports: tokens per forward (generated tokens / NFE), the quality
figures of ``dlm_core.evaluate.text_quality`` (generative perplexity under the AR twin, token
entropy, repeated 4-grams), the share of generated words that occur in the training plays
(``dlm_core.quality.known_word_share``), and wall time against the AR twin with its KV cache
decoding the same prompts, seeds and length, in each of ``--dtypes`` (the fastest is kept). Every
perplexity is scored by the AR twin in float32. Timing as in ``python -m dlm_core.bench``: one untimed
warm-up run per setting, each sample timed ``--repeats`` times (median), the mean over samples
reported, everything under ``torch.inference_mode`` with ``--threads`` threads. The AR twin is timed
before and after the sweep and the faster of the two is kept, so it is never the one handicapped.

Writes a markdown table (stdout and ``--out``) and JSON (``--json``) that
``dlm_core.viz.frontier.frontier_figure`` draws (tokens per pass vs generative perplexity, one
curve per model):

    {"meta": {...settings...},
     "ar": {"model", "setting", "tokens_per_forward": 1.0, "nfe", "gen_ppl_under_ar", "token_entropy",
            "repeated_4gram_share", "known_word_share", "wall_s", "ms_per_forward"},
     "rows": [{"model", "setting", "strategy", "parameter", "value", ...the same figures...,
               "speedup_vs_ar"}, ...]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlm_core.bench import timed_median, warm_up  # noqa: E402
from dlm_core.evaluate import SAMPLE_PROMPTS, text_quality  # noqa: E402
from dlm_core.frontier import (  # noqa: E402
    MAX_KNOWN_WORD_DROP,
    MAX_PPL_RATIO,
    MAX_REPEATED_4GRAMS,
    MIN_ENTROPY_RATIO,
    quality_shortfalls,
    reference_row,
)
from dlm_core.models.builtin import ASSETS_DIR, BUILTIN_ORDER_TEMPERATURE, load_canvas, native_bf16  # noqa: E402
from dlm_core.quality import known_word_share  # noqa: E402
from dlm_core.sampler import SamplerConfig  # noqa: E402
from dlm_core.sampler.config import CACHE_TEXT, SETTINGS, SUFFIX_WINDOW  # noqa: E402

TEMPERATURE, TOP_P = 1.0, 0.95  # the app's default sampling
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_LABELS = {"float32": "", "bfloat16": " · bf16"}  # float32, the models' training precision, goes unsaid
CACHES = ("dual", "prefix", "window", "none")


def cache_label(cache: str, args) -> str:
    """How a row names its cache: the reference's (the first of ``--caches``) goes unsaid."""
    if cache == args.caches[0]:
        return ""
    return f" · {CACHE_TEXT[None if cache == 'none' else cache]}" + (f" {args.suffix_window}" if cache == "window" else "")


def settings(args, cache: str) -> list[tuple[str, str, str, float, SamplerConfig]]:
    """(label, strategy, parameter name, parameter value, config) for every swept setting under ``cache``."""
    common = dict(gen_length=args.length, block_length=min(args.block, args.length), temperature=TEMPERATURE,
                  top_p=TOP_P, cache=None if cache == "none" else cache, suffix_window=args.suffix_window)
    rows = []
    for per_step in args.fixed:
        for tau in args.order_temperature:
            config = SamplerConfig(strategy="low_confidence", steps=args.length // per_step, order_temperature=tau, **common)
            label = f"low_confidence {per_step}/step" + (f", order T {tau:g}" if tau != args.order_temperature[0] else "")
            rows.append((label, "low_confidence", "tokens_per_step", float(per_step), config))
    for value in args.thresholds:
        config = SamplerConfig(strategy="threshold", threshold=value, steps=args.length, **common)
        rows.append((f"threshold {value:g}", "threshold", "threshold", value, config))
    for value in args.gammas:
        config = SamplerConfig(strategy="entropy_bound", gamma=value, steps=args.length, **common)
        rows.append((f"entropy_bound gamma {value:g}", "entropy_bound", "gamma", value, config))
    return rows


def measure_setting(model, scorer, prompts: list[str], config: SamplerConfig, args) -> dict:
    """Sample every prompt x seed with ``config`` (timed), then score the samples."""
    warm_up(model, prompts[0], config)
    finals, seconds = [], []
    for prompt in prompts:
        for seed in range(args.seeds):
            final, median = timed_median(model, prompt, config.replace(seed=seed), args.repeats)
            finals.append(final)
            seconds.append(median)
    pairs = [(f.tokens[: f.prompt_length].tolist(), f.tokens[f.prompt_length :].tolist()) for f in finals]
    generated = [f.tokens[f.prompt_length :].tolist() for f in finals]
    return {
        "tokens_per_forward": statistics.mean(len(g) / f.nfe for g, f in zip(generated, finals, strict=True)),
        "nfe": statistics.mean(f.nfe for f in finals),
        **text_quality(scorer, pairs),
        # pooled over the samples' words (a sample without words would make a per-sample mean NaN)
        "known_word_share": known_word_share("\n".join(model.decode(g) for g in generated)),
        "wall_s": statistics.mean(seconds),
        "ms_per_forward": statistics.mean(1000 * s / f.nfe for s, f in zip(seconds, finals, strict=True)),
    }


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"{meta['length']} tokens, {len(meta['prompts'])} prompts x {meta['seeds']} seeds, temperature "
        f"{meta['temperature']:g}, top-p {meta['top_p']}, blocks of {meta['block']}, cache {meta['cache']}"
        f"{' (unless the row names another)' if len(meta.get('caches', [])) > 1 else ''}; "
        f"median of {meta['repeats']} timed runs after a warm-up; {meta['machine']}, {meta['threads']} threads; "
        f"weights in {' and '.join(meta.get('dtypes', ['float32']))} (the AR twin: the faster).",
        "",
        "| model | setting | tokens/forward | gen PPL (AR twin) | token entropy | repeated 4-grams | known words "
        "| wall s | ms/forward | speed vs AR | quality targets |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    reference = reference_row(report)
    for row in [report["ar"], *report["rows"]]:
        speed = f"{row['speedup_vs_ar']:.2f}x" if "speedup_vs_ar" in row else "1.00x"
        missed = quality_shortfalls(row, reference) if reference else ["no reference"]
        lines.append(
            f"| {row['model']} | {row['setting']} | {row['tokens_per_forward']:.2f} | {row['gen_ppl_under_ar']:.1f} | "
            f"{row['token_entropy']:.2f} | {row['repeated_4gram_share']:.1%} | {row['known_word_share']:.1%} | "
            f"{row['wall_s']:.2f} | {row['ms_per_forward']:.1f} | {speed} | {'; '.join(missed) or 'met'} |"
        )
    against = "the first model decoding one token per step"
    if report.get("reference"):
        ref = report["reference"]
        against = (f"{ref['model']} decoding one token per step ({ref['setting']}) in {ref['source']}: gen PPL "
                   f"{ref['gen_ppl_under_ar']:.1f}, entropy {ref['token_entropy']:.2f}, known words {ref['known_word_share']:.1%}")
    lines += ["", f"Quality targets (``dlm_core.frontier``), against {against}: "
              f"gen PPL <= {MAX_PPL_RATIO:g}x, token entropy >= {MIN_ENTROPY_RATIO:g}x, repeated 4-grams <= "
              f"{MAX_REPEATED_4GRAMS:.0%}, known words at most {MAX_KNOWN_WORD_DROP * 100:g} points fewer."]
    return "\n".join(lines) + "\n"


def reference_of(path: str) -> dict | None:
    """The reference row of the frontier JSON at ``path``, or None if it has none (or is no frontier JSON)."""
    try:
        return reference_row(json.loads(Path(path).read_text()))
    except (OSError, ValueError, AttributeError):
        return None


def check_args(parser: argparse.ArgumentParser, args) -> None:
    """Bad flags get a clear error naming the flag and its allowed range."""
    if not 8 <= args.length <= 1024:
        parser.error(f"--length must be in [8, 1024], got {args.length}")
    if not 1 <= args.prompts <= len(SAMPLE_PROMPTS):
        parser.error(f"--prompts must be in [1, {len(SAMPLE_PROMPTS)}], got {args.prompts}")
    if not 1 <= args.seeds <= 64 or not 1 <= args.repeats <= 20:
        parser.error("--seeds must be in [1, 64] and --repeats in [1, 20]")
    if any(not 1 <= k <= args.length or args.length % k for k in args.fixed):
        parser.error(f"--fixed: each must be a divisor of --length ({args.length}), got {args.fixed}")
    if any(not 0 < t <= 1 for t in args.thresholds):
        parser.error(f"--thresholds: each must be in (0, 1], got {args.thresholds}")
    if any(not 0 <= t <= 10 for t in args.order_temperature):
        parser.error(f"--order-temperature: each must be in [0, 10], got {args.order_temperature}")
    if any(not 0 <= g <= 1000 for g in args.gammas):
        parser.error(f"--gammas: each must be in [0, 1000], got {args.gammas}")
    window = SETTINGS["suffix_window"]
    if not window.low <= args.suffix_window <= window.high:
        parser.error(f"--suffix-window must be in {window.interval()}, got {args.suffix_window}")
    if "bfloat16" in args.dtypes and not native_bf16():
        parser.error("--dtypes bfloat16: this CPU has no native bf16 (AVX-512 BF16 or AMX); torch would emulate it")
    if args.reference is not None and reference_of(args.reference) is None:
        parser.error(f"--reference {args.reference!r}: not a frontier JSON with a one-token-per-step reference row")
    for folder in [*args.models, args.ar]:
        if not (Path(folder) / "config.json").is_file():
            parser.error(f"model folder {folder!r} not found (no config.json)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[str(ASSETS_DIR / "canvas-diffusion")],
                        help="diffusion model folders, one curve each")
    parser.add_argument("--ar", default=str(ASSETS_DIR / "canvas-ar"), help="the AR twin: the race and the scorer")
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--prompts", type=int, default=4, help="the first N of dlm_core.evaluate.SAMPLE_PROMPTS")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per sample (median)")
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--caches", nargs="+", choices=CACHES, default=["dual"],
                        help="key/value caches, each a set of rows (the first is the reference's)")
    parser.add_argument("--suffix-window", type=int, default=SUFFIX_WINDOW,
                        help="cache window: [MASK] slots kept after the block")
    parser.add_argument("--fixed", type=int, nargs="*", default=[1, 2], help="low_confidence tokens per step")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.9, 0.7, 0.5, 0.3])
    parser.add_argument("--gammas", type=float, nargs="*", default=[0.1, 0.5, 1.0, 2.0])
    parser.add_argument("--order-temperature", type=float, nargs="+", default=[BUILTIN_ORDER_TEMPERATURE],
                        help="for the low_confidence rows, each a row (default: the app's; the first is the reference's)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["float32"],
                        help="decode every model in each (the first is the reference's); the AR twin is timed in "
                             "each and its faster kept. bfloat16 only where the CPU multiplies it natively")
    parser.add_argument("--reference", help="a frontier JSON whose reference row the quality targets use (for a "
                        "focused sweep that does not decode the reference itself)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/frontier.md")
    parser.add_argument("--json", default="runs/frontier.json")
    args = parser.parse_args(argv)
    check_args(parser, args)
    torch.set_num_threads(args.threads)
    prompts = list(SAMPLE_PROMPTS[: args.prompts])
    contestants = {name: load_canvas(args.ar, dtype=DTYPES[name]) for name in args.dtypes}
    # The yardstick for every row's perplexity: the AR twin in float32.
    scorer = contestants["float32"] if "float32" in contestants else load_canvas(args.ar)
    ar_config = SamplerConfig(gen_length=args.length, strategy="left_to_right", temperature=TEMPERATURE, top_p=TOP_P)
    report = {
        "meta": {
            "length": args.length, "prompts": prompts, "seeds": args.seeds, "repeats": args.repeats,
            "block": min(args.block, args.length), "cache": args.caches[0], "caches": args.caches,
            "suffix_window": args.suffix_window, "temperature": TEMPERATURE, "top_p": TOP_P,
            "order_temperature": args.order_temperature[0], "dtype": args.dtypes[0], "dtypes": args.dtypes,
            "threads": args.threads, "torch": torch.__version__,
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "rows": [],
    }
    if args.reference is not None:
        report["reference"] = {**reference_of(args.reference), "source": args.reference}
    # The AR twin in every dtype asked; its fastest is the one raced (never handicap the AR twin).
    timed = {name: measure_setting(ar, scorer, prompts, ar_config, args) for name, ar in contestants.items()}
    fastest = min(timed, key=lambda name: timed[name]["wall_s"])
    report["ar"] = {"model": Path(args.ar).name, "setting": "AR twin + KV cache" + DTYPE_LABELS[fastest], "dtype": fastest,
                    "wall_s_by_dtype": {name: figures["wall_s"] for name, figures in timed.items()}, **timed[fastest]}
    print(json.dumps(report["ar"]), flush=True)
    for folder in args.models:
        for dtype in args.dtypes:
            model = load_canvas(folder, dtype=DTYPES[dtype])
            for cache in args.caches:
                for label, strategy, parameter, value, config in settings(args, cache):
                    row = {"model": Path(folder).name, "setting": label + cache_label(cache, args) + DTYPE_LABELS[dtype],
                           "strategy": strategy, "parameter": parameter, "value": value,
                           "order_temperature": config.order_temperature, "dtype": dtype, "cache": cache,
                           **measure_setting(model, scorer, prompts, config, args)}
                    report["rows"].append(row)
                    print(json.dumps(row), flush=True)
    # Time it again after the sweep, in every dtype, and keep the fastest of all those runs (a shared or
    # throttled CPU slows whichever runs first; its samples are the same either way).
    for name, ar in contestants.items():
        again = measure_setting(ar, scorer, prompts, ar_config, args)
        report["ar"]["wall_s_by_dtype"][name] = min(report["ar"]["wall_s_by_dtype"][name], again["wall_s"])
        if again["wall_s"] < report["ar"]["wall_s"]:
            setting = "AR twin + KV cache" + DTYPE_LABELS[name]
            report["ar"].update(again, setting=setting, dtype=name)
    for row in report["rows"]:
        row["speedup_vs_ar"] = report["ar"]["wall_s"] / row["wall_s"]
    table = markdown(report)
    print("\n" + table)
    for path, text in ((args.out, table), (args.json, json.dumps(report, indent=2) + "\n")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
