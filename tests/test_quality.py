"""Quality measures: entropy, repetition and generative perplexity on cases with known answers."""

import math

import torch

from dlm_core.quality import generative_nll, generative_perplexity, repeated_ngram_share, token_entropy


def test_token_entropy_known_values():
    assert token_entropy([7, 7, 7, 7]) == 0
    assert math.isclose(token_entropy([1, 2, 3, 4]), math.log(4))


def test_repeated_ngram_share():
    assert repeated_ngram_share(list(range(10))) == 0
    assert math.isclose(repeated_ngram_share([1, 2, 3, 4] * 3), 5 / 9)  # 9 four-grams, the last 5 repeat


def test_generative_nll_matches_a_manual_computation(tiny_ar_model):
    prompt, generated = [3, 4, 5], [6, 7, 8, 9]
    nll, count = generative_nll(tiny_ar_model, prompt, generated)
    logits = tiny_ar_model.logits(torch.tensor([prompt + generated]))[0]
    manual = -sum(torch.log_softmax(logits[i], -1)[t].item() for i, t in zip(range(3, 7), generated, strict=True))
    assert count == 4 and math.isclose(nll, manual, rel_tol=1e-4)
    assert math.isclose(generative_perplexity(tiny_ar_model, [(prompt, generated)]), math.exp(manual / 4), rel_tol=1e-4)
