"""Sample quality of the built-in diffusion model across decoding settings: the measurement behind
the app's default sampling (block length and order temperature).

    python benchmarks/sampling_sweep.py                  # ~15 min on 2 cores
    python benchmarks/sampling_sweep.py --blocks 32 8 --order-temperatures 0.1 --strategies low_confidence --seeds 1

For each setting it samples ``--gen-length`` tokens after the famous openings of
``dlm_core.evaluate.SAMPLE_PROMPTS`` (seeds 0..``--seeds``-1, temperature 1.0, top-p 0.95, two tokens
per step as in the app) and prints the figures ``python -m dlm_core.evaluate --generation`` reports:
generative perplexity under the AR twin, token entropy, and the share of repeated 4-grams (target at
most 10 %; real held-out text has about 6 %). Rows: ``low_confidence`` (LLaDA) with each block length
of ``--blocks`` (0 = one block), then with blocks of 32 (or one block, if shorter) and each order
temperature of ``--order-temperatures`` (Dream's alg_temp), then each other strategy of
``--strategies`` with blocks of 32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlm_core.evaluate import sample_quality  # noqa: E402
from dlm_core.models.builtin import ASSETS_DIR, load_canvas  # noqa: E402
from dlm_core.sampler import STRATEGIES, SamplerConfig  # noqa: E402


def settings(args) -> list[tuple[str, int, float]]:
    """(strategy, block length, order temperature) rows: blocks, order temperatures, other strategies."""
    block = min(32, args.gen_length)
    rows = []
    if "low_confidence" in args.strategies:
        rows += [("low_confidence", size, 0.0) for size in args.blocks]
        rows += [("low_confidence", block, tau) for tau in args.order_temperatures if tau > 0]
    return rows + [(name, block, 0.0) for name in args.strategies if name != "low_confidence"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffusion", default=str(ASSETS_DIR / "canvas-diffusion"))
    parser.add_argument("--ar", default=str(ASSETS_DIR / "canvas-ar"), help="the scorer (generative perplexity)")
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--blocks", type=int, nargs="+", default=[32, 8, 4])
    parser.add_argument("--order-temperatures", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--strategies", nargs="+", default=["low_confidence", "random", "entropy"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.strategies if name not in STRATEGIES or STRATEGIES[name].one_per_step]
    if unknown:
        parser.error(f"--strategies: unknown or one-per-step strategies {unknown}")
    if any(not 0 <= tau <= 10 for tau in args.order_temperatures):
        parser.error("--order-temperatures: each must be in [0, 10]")
    if not 1 <= args.seeds <= 16 or not 8 <= args.gen_length <= 512 or args.gen_length % 2:
        parser.error("--seeds must be in [1, 16] and --gen-length an even number in [8, 512]")
    if any(block < 0 or block > args.gen_length or (block and args.gen_length % block) for block in args.blocks):
        parser.error(f"--blocks: each must be 0 or a divisor of --gen-length ({args.gen_length})")
    torch.set_num_threads(args.threads)
    diffusion, ar = load_canvas(args.diffusion), load_canvas(args.ar)
    print(f"{args.diffusion}: {args.gen_length} tokens, {args.gen_length // 2} steps (2 per step), "
          f"temperature 1.0, top-p 0.95, seeds 0..{args.seeds - 1}\n")
    print("| strategy | block | order temperature | generative PPL (AR twin) | token entropy | repeated 4-grams | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for name, block, tau in settings(args):
        config = SamplerConfig(gen_length=args.gen_length, steps=args.gen_length // 2, block_length=block or None,
                               strategy=name, temperature=1.0, top_p=0.95, order_temperature=tau)
        started = time.perf_counter()
        figures, _ = sample_quality(diffusion, ar, config, args.seeds)
        seconds = time.perf_counter() - started
        rows.append({"strategy": name, "block_length": block, "order_temperature": tau, **figures, "seconds": seconds})
        print(f"| {name} | {block or args.gen_length} | {tau:g} | {figures['gen_ppl_under_ar']:.1f} | "
              f"{figures['token_entropy']:.2f} | {figures['repeated_4gram_share']:.1%} | {seconds:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
