"""What the code model pair writes, measured: ``python -m dlm_core.code_eval``.

The prompts are real functions of the held-out stdlib modules (``dlm_core.code_data``: whole modules
never trained on): each prompt is a function's ``def`` line(s) and its docstring, so a model must write
the body. For each model of the pair, at the app's sampling (temperature 1, top-p 0.95; the diffusion
model one token per step in blocks of 32, the AR twin left to right), it reports

* the generative perplexity of the completions under the AR twin, their token entropy and their share of
  repeated 4-grams (``dlm_core.evaluate.text_quality``, as for the Shakespeare pair);
* the share of completed functions that parse: the prompt plus the completion, cut where the function's
  body ends (the first non-blank line indented no deeper than its ``def``), dedented, ``ast.parse``;
* for the diffusion model, what it writes first: the mean relative step at which each kind of token
  (indentation and newlines, punctuation, keywords, names, other) is committed.

Then the question code raises for parallel decoding: does code let a diffusion model commit more tokens
per forward than prose? The same adaptive rules (Fast-dLLM ``threshold``, EB-sampler ``entropy_bound``)
and fixed counts per step run on the code model with the code prompts and on the Shakespeare model with
the Shakespeare prompts (``dlm_core.evaluate.SAMPLE_PROMPTS``); each corpus's rows are judged against its
own one-token-per-step row by the quality targets of ``dlm_core.frontier`` (with the parse share in place
of the known-word share for code), and the answer compares the most tokens per forward that meets them.
Held-out bits per character come from ``python -m dlm_core.evaluate --data runs/code-data --ar
assets/code-ar --diffusion assets/code-diffusion`` (the same command as for the Shakespeare pair).
"""

from __future__ import annotations

import argparse
import ast
import json
import keyword
import statistics
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch

from .code_data import SourceFile, collect_stdlib
from .evaluate import SAMPLE_PROMPTS, text_quality
from .frontier import quality_shortfalls
from .models.builtin import ASSETS_DIR, BUILTIN_ORDER_TEMPERATURE, load_canvas
from .quality import known_word_share
from .sampler import SamplerConfig, denoise, run_to_end

MAX_PROMPT_LINES = 24  # a signature and docstring longer than this would crowd out the body
TEMPERATURE, TOP_P, BLOCK = 1.0, 0.95, 32  # the app's sampling


@dataclass(frozen=True)
class FunctionPrompt:
    """A held-out function cut after its docstring's closing quotes; the body follows."""

    path: str
    name: str
    prompt: str


def function_prompts(files: list[SourceFile], count: int) -> list[FunctionPrompt]:
    """``count`` functions with a docstring and a body, evenly spaced over the held-out ``files`` (path
    order, then line order), each cut after its docstring."""
    candidates = []
    for source in sorted((f for f in files if f.held_out), key=lambda f: f.path):
        lines = source.text.splitlines(keepends=True)
        for node in ast.walk(ast.parse(source.text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or ast.get_docstring(node) is None:
                continue
            docstring = node.body[0]
            if len(node.body) < 2 or docstring.end_lineno - node.lineno >= MAX_PROMPT_LINES:
                continue
            # Cut after the closing quotes, not after the newline: the byte-level BPE merges a newline with
            # the next line's indentation, so a prompt ending in a bare newline is one the model never saw.
            prompt = "".join(lines[node.lineno - 1 : docstring.end_lineno]).removesuffix("\n").removesuffix("\r")
            candidates.append((source.path, node.lineno, FunctionPrompt(source.path, node.name, prompt)))
    candidates.sort(key=lambda item: item[:2])
    if len(candidates) < count:
        raise ValueError(f"count must be at most {len(candidates)} (functions with a docstring), got {count}")
    return [candidates[i * len(candidates) // count][2] for i in range(count)]


def completed_function(prompt: str, completion: str) -> str:
    """The function that ``prompt`` starts, as ``completion`` finishes it, dedented to column 0: its
    lines up to the first non-blank line indented no deeper than the ``def`` (simplification: a
    multi-line string in the body whose lines start at that depth ends it early)."""
    lines = (prompt + completion).split("\n")
    depth = len(lines[0]) - len(lines[0].lstrip())
    body = [lines[0]]
    for line in lines[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth and len(body) > 1:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body))


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a null byte in the source
        return False
    return True


def diffusion_config(length: int, **rule) -> SamplerConfig:
    """The app's sampling in blocks of 32 with the dual cache; ``low_confidence`` one token per step
    (order temperature as in the app) unless ``rule`` says otherwise."""
    rule = {"strategy": "low_confidence", "steps": length} | rule
    ranked = rule["strategy"] == "low_confidence"
    return SamplerConfig(gen_length=length, block_length=min(BLOCK, length), temperature=TEMPERATURE, top_p=TOP_P,
                         cache="dual", order_temperature=BUILTIN_ORDER_TEMPERATURE if ranked else 0.0, **rule)


def sample(model, scorer, prompts: list[str], config: SamplerConfig, seeds: int, code: bool) -> dict:
    """Sample every prompt x seed; the quality figures, tokens per forward and the domain figure (parse
    share for code, known-word share for prose)."""
    finals = [run_to_end(model, prompt, config.replace(seed=seed)) for prompt in prompts for seed in range(seeds)]
    # Quality is scored on every generated token, as in the frontier benchmark; a function ends at its
    # end-of-text, so the parse check reads the answer only.
    pairs = [(f.tokens[: f.prompt_length].tolist(), f.tokens[f.prompt_length :].tolist()) for f in finals]
    completions = [model.decode(f.answer_ids()) for f in finals]
    row = {
        "tokens_per_forward": statistics.mean(len(f.slots) / f.nfe for f in finals),
        **text_quality(scorer, pairs),
    }
    if code:
        texts = [prompt for prompt in prompts for _ in range(seeds)]
        row["parse_share"] = statistics.mean(parses(completed_function(p, c)) for p, c in zip(texts, completions, strict=True))
    else:
        row["known_word_share"] = known_word_share("\n".join(completions))
    return row


TOKEN_CLASSES = ("whitespace", "punctuation", "keyword", "name", "other")


def token_class(text: str) -> str:
    """What a code token is, by its text: ``whitespace`` (indentation, newlines), ``punctuation``
    (``:``, ``(``, ``=``, ...), a Python ``keyword`` (``def``, ``return``, ...), a ``name``, or
    ``other`` (numbers, strings, mixed pieces). A BPE token may hold a leading space: it is ignored."""
    word = text.strip()
    if not word:
        return "whitespace"
    if keyword.iskeyword(word):
        return "keyword"
    if word.isidentifier():
        return "name"
    if all(not c.isalnum() and c != "_" and not c.isspace() for c in word):
        return "punctuation"
    return "other"


def commit_order(model, prompts: list[str], config: SamplerConfig, seeds: int) -> dict:
    """When each kind of token gets written: the mean of (commit step / steps of the run), 0 = first,
    1 = last, per ``token_class``, over every generated token of every prompt x seed (diffusion only:
    a left-to-right writer has no order to show)."""
    sums, counts = dict.fromkeys(TOKEN_CLASSES, 0.0), dict.fromkeys(TOKEN_CLASSES, 0)
    for prompt in prompts:
        for seed in range(seeds):
            written_at: dict[int, int] = {}
            for state in denoise(model, prompt, config.replace(seed=seed)):
                for position in state.committed.tolist():
                    written_at[position] = state.step
            steps = max(state.step, 1)
            for position, step in written_at.items():
                kind = token_class(model.decode([int(state.tokens[position])]))
                sums[kind] += (step - 1) / max(steps - 1, 1)
                counts[kind] += 1
    return {kind: {"mean_relative_step": sums[kind] / counts[kind], "tokens": counts[kind]}
            for kind in TOKEN_CLASSES if counts[kind]}


def sweep_settings(length: int, fixed: list[int], thresholds: list[float], gammas: list[float]) -> list[tuple[str, SamplerConfig]]:
    rows = [(f"low_confidence {k}/step", diffusion_config(length, steps=length // k)) for k in fixed]
    rows += [(f"threshold {t:g}", diffusion_config(length, strategy="threshold", threshold=t)) for t in thresholds]
    rows += [(f"entropy_bound gamma {g:g}", diffusion_config(length, strategy="entropy_bound", gamma=g)) for g in gammas]
    return rows


def best_within_targets(rows: list[dict], domain: str) -> dict | None:
    """The row with the most tokens per forward that meets every quality target against the corpus's
    one-token-per-step row (the first row)."""
    reference = rows[0]
    good = [row for row in rows if not quality_shortfalls(row, reference, domain=domain)]
    return max(good, key=lambda row: row["tokens_per_forward"], default=None)


def report(args) -> dict:
    torch.set_num_threads(args.threads)
    code_ar, code_diffusion = load_canvas(args.code_ar), load_canvas(args.code_diffusion)
    functions = function_prompts(collect_stdlib().files, args.functions)
    code_prompts = [f.prompt for f in functions]
    result: dict = {"functions": [f"{f.path}:{f.name}" for f in functions], "length": args.length, "seeds": args.seeds}
    ar_config = SamplerConfig(gen_length=args.length, strategy="left_to_right", temperature=TEMPERATURE, top_p=TOP_P)
    result["app_defaults"] = {
        "diffusion": sample(code_diffusion, code_ar, code_prompts, diffusion_config(args.length), args.seeds, True),
        "ar": sample(code_ar, code_ar, code_prompts, ar_config, args.seeds, True),
    }
    result["commit_order"] = commit_order(code_diffusion, code_prompts, diffusion_config(args.length), args.seeds)
    settings = sweep_settings(args.length, args.fixed, args.thresholds, args.gammas)
    corpora = {"code": (code_diffusion, code_ar, code_prompts, True)}
    if args.prose_diffusion:
        prose_prompts = list(SAMPLE_PROMPTS[: args.prose_prompts])
        corpora["prose"] = (load_canvas(args.prose_diffusion), load_canvas(args.prose_ar), prose_prompts, False)
    result["sweep"] = {}
    for corpus, (model, scorer, prompts, code) in corpora.items():
        rows = [{"setting": label, **sample(model, scorer, prompts, config, args.seeds, code)} for label, config in settings]
        domain = "parse_share" if code else "known_word_share"
        for row in rows:
            row["quality_targets"] = "; ".join(quality_shortfalls(row, rows[0], domain=domain)) or "met"
        result["sweep"][corpus] = {"rows": rows, "best_within_targets": best_within_targets(rows, domain)}
    return result


def markdown(result: dict) -> str:
    lines = [f"{result['length']} tokens after each of {len(result['functions'])} held-out functions' signature "
             f"and docstring, {result['seeds']} seeds, temperature {TEMPERATURE:g}, top-p {TOP_P}.", "",
             "| model | gen PPL (code AR twin) | token entropy | repeated 4-grams | functions that parse |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in result["app_defaults"].items():
        lines.append(f"| {name} | {row['gen_ppl_under_ar']:.1f} | {row['token_entropy']:.2f} | "
                     f"{row['repeated_4gram_share']:.1%} | {row['parse_share']:.0%} |")
    if "commit_order" in result:
        lines += ["", "What the diffusion model writes first (mean step of each kind of token, 0 = first step, 1 = last):",
                  "", "| token kind | mean relative step | tokens |", "| --- | ---: | ---: |"]
        for kind, row in sorted(result["commit_order"].items(), key=lambda item: item[1]["mean_relative_step"]):
            lines.append(f"| {kind} | {row['mean_relative_step']:.2f} | {row['tokens']} |")
    lines += ["", "| corpus | setting | tokens/forward | gen PPL (AR twin) | token entropy | repeated 4-grams | "
              "parses / known words | quality targets |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for corpus, sweep in result["sweep"].items():
        for row in sweep["rows"]:
            domain = row.get("parse_share", row.get("known_word_share"))
            lines.append(f"| {corpus} | {row['setting']} | {row['tokens_per_forward']:.2f} | {row['gen_ppl_under_ar']:.1f} | "
                         f"{row['token_entropy']:.2f} | {row['repeated_4gram_share']:.1%} | {domain:.0%} | "
                         f"{row['quality_targets']} |")
    lines.append("")
    for corpus, sweep in result["sweep"].items():
        best = sweep["best_within_targets"]
        lines.append(f"- {corpus}: " + (f"at most {best['tokens_per_forward']:.2f} tokens per forward within the "
                                        f"quality targets ({best['setting']})" if best else "no setting meets the targets"))
    return "\n".join(lines) + "\n"


CODE_CARD = """---
license: psf-2.0
library_name: transformers
tags: [diffusion-canvas, python, code, {tag}]
---

# {name}

{summary}

| | |
| --- | --- |
| architecture | CanvasLM (``dlm_core/models/canvas_lm.py``): {layers} layers, width {width}, {heads} heads, SwiGLU {mlp}, rotary positions, RMSNorm, tied embeddings; {attention} attention |
| context | {context} tokens |
| tokenizer | byte-level BPE, {vocab} tokens (indentation and newlines are ordinary bytes: decoding is exact), ``<|mask|>`` = {mask_id}, ``<|endoftext|>`` = {eos_id} |
| data | the standard library of {python} ({licence}): {train_files} modules, {train_tokens:,} training tokens; {held_out} whole modules held out; files, hashes and split in ``runs/code-data/manifest.json`` (``dlm_core.code_data``) |
| objective | {objective} |
| training compute | {steps:,} optimiser steps, {tokens:,} tokens, {hours:.2f} h on a 2-core x86-64 CPU (bf16 autocast) |
| weights | ``model.safetensors``, float16 |
| reproduce | ``bash scripts/train_code.sh`` (resumable) |

## Evaluation

Held-out modules, bits per character (``python -m dlm_core.evaluate --data runs/code-data --ar assets/code-ar
--diffusion assets/code-diffusion --samples {mc}``):

| | bits per character |
| --- | ---: |
| unigram baseline | {unigram:.3f} |
| autoregressive twin (exact NLL) | {ar_bpc:.3f} |
| diffusion model (ELBO upper bound, {mc} draws of t per window, s.e. {stderr:.3f}) | {diff_bpc:.3f} |

Completing held-out functions from their signature and docstring (``python -m dlm_core.code_eval``):

{generation}
"""


def write_cards(result: dict, bpc: dict, diffusion: Path, ar: Path, data: Path) -> None:
    """README.md model cards for the code pair, every number from ``result`` (this module), ``bpc``
    (``dlm_core.evaluate``'s JSON) and the folders' ``config.json`` / ``training.json``."""
    stats = json.loads((data / "stats.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    for folder, kind in ((diffusion, "diffusion"), (ar, "ar")):
        config = json.loads((folder / "config.json").read_text())
        training = json.loads((folder / "training.json").read_text())
        is_diffusion = kind == "diffusion"
        card = CODE_CARD.format(
            name=folder.name, tag="masked-diffusion" if is_diffusion else "autoregressive",
            summary=("Diffusion Canvas's built-in masked diffusion model for Python: it starts from a canvas of masks "
                     "and writes code in any order, so it can also fill in the middle of a function. Initialised from "
                     "the autoregressive twin's weights, then trained with the masked-diffusion objective."
                     if is_diffusion else
                     "The autoregressive twin of code-diffusion: same size, tokenizer and data; writes left to right. "
                     "The race's opponent and the scorer for generative perplexity."),
            layers=config["num_hidden_layers"], width=config["hidden_size"], heads=config["num_attention_heads"],
            mlp=config["intermediate_size"], attention="bidirectional" if is_diffusion else "causal",
            context=config["max_position_embeddings"], vocab=config["vocab_size"], mask_id=config["mask_token_id"],
            eos_id=config["eos_token_id"], python=f"{manifest['implementation']} {manifest['python_version']}",
            licence=manifest["licence"], train_files=stats["train"]["plays"], train_tokens=stats["train"]["tokens"],
            held_out=len(stats["validation_plays"]),
            objective=("LLaDA / MDLM masked diffusion: t ~ U(0, 1], mask each token with probability t, cross-entropy "
                       "on masked tokens weighted by 1/t" if is_diffusion else "next-token cross-entropy"),
            steps=training["step"], tokens=training["tokens"], hours=training["seconds"] / 3600,
            unigram=bpc["unigram_bits_per_char"], ar_bpc=bpc["ar_bits_per_char"], diff_bpc=bpc["diffusion_bits_per_char"],
            stderr=bpc["diffusion_bits_per_char_stderr"], mc=bpc["diffusion_samples_per_window"],
            generation=markdown(result),
        )
        (folder / "README.md").write_text(card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm_core.code_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-ar", default=str(ASSETS_DIR / "code-ar"))
    parser.add_argument("--code-diffusion", default=str(ASSETS_DIR / "code-diffusion"))
    parser.add_argument("--prose-ar", default=str(ASSETS_DIR / "canvas-ar"))
    parser.add_argument("--prose-diffusion", default=str(ASSETS_DIR / "canvas-diffusion"),
                        help="the Shakespeare model to compare tokens per forward with ('' to skip)")
    parser.add_argument("--functions", type=int, default=8, help="held-out functions to complete")
    parser.add_argument("--prose-prompts", type=int, default=len(SAMPLE_PROMPTS))
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--fixed", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.9, 0.7, 0.5])
    parser.add_argument("--gammas", type=float, nargs="*", default=[0.5, 2.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the markdown here")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--data", default="runs/code-data", help="the code corpus (stats, manifest) for the cards")
    parser.add_argument("--bpc-json", default=None,
                        help="with --write-cards: the JSON of `python -m dlm_core.evaluate --data runs/code-data ...`")
    parser.add_argument("--write-cards", action="store_true", help="write README.md model cards into both folders")
    parser.add_argument("--results", default=None,
                        help="with --write-cards: take the figures from this --json output instead of measuring again")
    args = parser.parse_args(argv)
    if args.write_cards and not args.bpc_json:
        parser.error("--write-cards needs --bpc-json (the held-out bits per character)")
    for flag, value, low, high in (("--functions", args.functions, 1, 200), ("--length", args.length, 8, 512),
                                   ("--seeds", args.seeds, 1, 16), ("--threads", args.threads, 1, 64),
                                   ("--prose-prompts", args.prose_prompts, 1, len(SAMPLE_PROMPTS))):
        if not low <= value <= high:
            parser.error(f"{flag} must be in [{low}, {high}], got {value}")
    if not args.fixed or args.fixed[0] != 1:
        parser.error("--fixed must start with 1 (the one-token-per-step reference row)")
    result = json.loads(Path(args.results).read_text()) if args.results else report(args)
    text = markdown(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json and not args.results:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.write_cards:
        bpc = json.loads(Path(args.bpc_json).read_text())
        write_cards(result, bpc, Path(args.code_diffusion), Path(args.code_ar), Path(args.data))


if __name__ == "__main__":
    main()
