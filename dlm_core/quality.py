"""Quality measures of generated text, shared by the benchmark and the model evaluation.

* generative perplexity: exp of the mean negative log-likelihood of the generated tokens under the
  autoregressive twin, conditioned on the prompt (as in MDLM / ReMDM's "Gen PPL"): lower reads more
  like the corpus to the scorer; degenerate repetition can also score low, hence
* token entropy: the entropy (nats) of the empirical token distribution within one sample, the usual
  companion check (a looping sample has low entropy);
* repetition: the share of 4-grams in a sample that already occurred earlier in the same sample;
* known words: the share of a sample's words (lower-cased letter runs, inner apostrophes kept) that
  occur somewhere in the training plays: invented words ("thouse", "preciout") lower it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F


@torch.no_grad()
def generative_nll(scorer, prompt_ids: Sequence[int], generated_ids: Sequence[int]) -> tuple[float, int]:
    """(total NLL in nats, number of scored tokens) of ``generated_ids`` after ``prompt_ids``.

    ``scorer`` is an autoregressive ``ModelAdapter`` (its ``logits`` are position-aligned, so row i is
    the prediction of token i from tokens < i). Token 0 of the whole sequence has no context and is
    never scored; a sample is cut to the scorer's ``max_length``.
    """
    ids = [int(i) for i in prompt_ids] + [int(i) for i in generated_ids]
    ids = ids[: scorer.max_length]
    first = max(1, len(prompt_ids))
    if len(ids) <= first:
        return 0.0, 0
    tensor = torch.tensor([ids], device=scorer.device)
    logits = scorer.logits(tensor)[0, first:]
    nll = F.cross_entropy(logits.float(), tensor[0, first:], reduction="sum")
    return float(nll), len(ids) - first


def generative_perplexity(scorer, samples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> float:
    """exp(total NLL / total tokens) over (prompt_ids, generated_ids) pairs."""
    total, count = 0.0, 0
    for prompt_ids, generated_ids in samples:
        nll, n = generative_nll(scorer, prompt_ids, generated_ids)
        total, count = total + nll, count + n
    return math.exp(total / count) if count else math.nan


def token_entropy(ids: Sequence[int]) -> float:
    """Entropy in nats of the token frequencies of one sample (0 for a single repeated token)."""
    counts = Counter(int(i) for i in ids)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else math.nan


def repeated_ngram_share(ids: Sequence[int], n: int = 4) -> float:
    """Share of the sample's n-grams that already appeared earlier in the same sample."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return math.nan
    seen: set[tuple] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``: lower-cased runs of letters, apostrophes inside a word kept (o'er, 'tis -> tis)."""
    return WORD.findall(text.lower())


@lru_cache(maxsize=1)
def training_vocabulary() -> frozenset[str]:
    """Every word of the training plays (the held-out plays excluded)."""
    from .data import load_plays, split_plays

    train, _ = split_plays(load_plays())
    return frozenset(word for text in train.values() for word in words(text))


def known_word_share(text: str, vocabulary: frozenset[str] | None = None) -> float:
    """Share of the words of ``text`` (occurrences, not distinct words) found in ``vocabulary``
    (default: the training plays'); NaN for a text without words."""
    found = words(text)
    vocabulary = training_vocabulary() if vocabulary is None else vocabulary
    return sum(word in vocabulary for word in found) / len(found) if found else math.nan

