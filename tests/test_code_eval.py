"""code_eval: held-out function prompts, cutting a completion to its function, the parse check, the sweep."""

import ast

import pytest

from dlm_core import code_eval
from dlm_core.code_data import SourceFile, is_held_out
from dlm_core.code_eval import completed_function, function_prompts, parses

MODULE = '''import os


def documented(a, b):
    """Add two numbers.

    Longer text.
    """
    total = a + b
    return total


def undocumented(x):
    return x


class Box:
    def method(self):
        """A method."""
        return self


def only_docstring():
    """Nothing else."""
'''


def held_out_path(held_out: bool) -> str:
    return next(f"pkg/mod{i}.py" for i in range(10_000) if is_held_out(f"pkg/mod{i}.py") == held_out)


def test_function_prompts_cut_held_out_functions_after_their_docstring():
    files = [SourceFile(held_out_path(True), MODULE, "0"), SourceFile(held_out_path(False), MODULE, "1")]
    prompts = function_prompts(files, 2)
    assert [p.name for p in prompts] == ["documented", "method"]  # docstring and a body; trained modules skipped
    assert all(p.path == files[0].path for p in prompts)
    assert prompts[0].prompt == 'def documented(a, b):\n    """Add two numbers.\n\n    Longer text.\n    """'
    assert prompts[1].prompt == '    def method(self):\n        """A method."""'
    with pytest.raises(ValueError, match="count must be at most 2"):
        function_prompts(files, 3)


def test_completed_function_stops_where_the_body_ends_and_dedents():
    prompt = '    def method(self):\n        """A method."""\n'
    completion = "        if self:\n\n            return 1\n        return 2\n\n    def other(self):\n        pass\n"
    source = completed_function(prompt, completion)
    assert source == 'def method(self):\n    """A method."""\n    if self:\n\n        return 1\n    return 2\n'
    assert parses(source)
    tree = ast.parse(source)
    assert [node.name for node in tree.body] == ["method"]  # the next method is not part of it


def test_parses_rejects_broken_and_unfinished_bodies():
    prompt = 'def f(x):\n    """Doc."""\n'
    assert parses(completed_function(prompt, "    return x\n"))
    assert not parses(completed_function(prompt, "    return (x\n"))  # unfinished: cut mid-expression
    assert not parses(completed_function(prompt, "    if x:\n"))  # no body after the colon
    assert not parses(completed_function(prompt, "    return x\x00\n"))  # a null byte: ValueError, not a crash


def test_sample_reports_parse_share_and_tokens_per_forward(tiny_model):
    prompts = ['def f(x):\n    """Doc."""\n']
    row = code_eval.sample(tiny_model, tiny_model, prompts, code_eval.diffusion_config(16, steps=8), seeds=2, code=True)
    assert row["tokens_per_forward"] == pytest.approx(2.0)  # 16 slots in 8 steps, every run
    assert 0.0 <= row["parse_share"] <= 1.0 and row["parse_share"] in (0.0, 0.5, 1.0)  # 2 samples
    assert {"gen_ppl_under_ar", "token_entropy", "repeated_4gram_share"} <= set(row)


def test_best_within_targets_takes_the_most_parallel_row_that_meets_them():
    base = {"gen_ppl_under_ar": 10.0, "token_entropy": 4.0, "repeated_4gram_share": 0.0, "parse_share": 0.5}
    rows = [
        {**base, "setting": "1/step", "tokens_per_forward": 1.0},
        {**base, "setting": "ok", "tokens_per_forward": 2.5, "gen_ppl_under_ar": 12.0},
        {**base, "setting": "worse ppl", "tokens_per_forward": 4.0, "gen_ppl_under_ar": 13.0},
        {**base, "setting": "fewer parse", "tokens_per_forward": 3.0, "parse_share": 0.45},
    ]
    assert code_eval.best_within_targets(rows, "parse_share")["setting"] == "ok"
    assert code_eval.best_within_targets(rows[2:3] + rows[2:], "parse_share")["setting"] == "worse ppl"



def test_write_cards_fills_every_number_from_its_sources(tmp_path):
    import json

    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps({"validation_plays": ["a.py", "b.py"], "train": {"plays": 40, "tokens": 12345}}))
    (data / "manifest.json").write_text(json.dumps({"implementation": "CPython", "python_version": "3.11.7", "licence": "PSF"}))
    config = {"num_hidden_layers": 6, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 704,
              "max_position_embeddings": 640, "vocab_size": 4096, "mask_token_id": 1, "eos_token_id": 0}
    folders = {}
    for name, steps in (("code-diffusion", 4000), ("code-ar", 2900)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        (folders[name] / "config.json").write_text(json.dumps(config))
        (folders[name] / "training.json").write_text(json.dumps({"step": steps, "tokens": steps * 4096, "seconds": 3600}))
    row = {"gen_ppl_under_ar": 7.5, "token_entropy": 3.1, "repeated_4gram_share": 0.02, "parse_share": 0.625,
           "tokens_per_forward": 1.0, "setting": "low_confidence 1/step", "quality_targets": "met"}
    result = {"functions": ["a.py:f"], "length": 128, "seeds": 1, "app_defaults": {"diffusion": row, "ar": row},
              "sweep": {"code": {"rows": [row], "best_within_targets": row}}}
    bpc = {"unigram_bits_per_char": 5.1, "ar_bits_per_char": 1.234, "diffusion_bits_per_char": 1.456,
           "diffusion_bits_per_char_stderr": 0.012, "diffusion_samples_per_window": 8}
    code_eval.write_cards(result, bpc, folders["code-diffusion"], folders["code-ar"], data)
    diffusion_card = (folders["code-diffusion"] / "README.md").read_text()
    ar_card = (folders["code-ar"] / "README.md").read_text()
    for text in ("1.234", "1.456", "12,345", "CPython 3.11.7", "2 whole modules held out", "62%", "bidirectional"):
        assert text in diffusion_card, text
    assert "4,000 optimiser steps" in diffusion_card and "2,900 optimiser steps" in ar_card and "causal" in ar_card


def test_token_class_names_what_a_code_token_is():
    assert [code_eval.token_class(t) for t in ("    ", "\n", ":", " (", "):", " return", "def", " foo", "x1", "'a'", "12")] == [
        "whitespace", "whitespace", "punctuation", "punctuation", "punctuation", "keyword", "keyword", "name", "name",
        "other", "other"]


def test_commit_order_spans_the_run_and_counts_every_generated_token(tiny_model):
    order = code_eval.commit_order(tiny_model, ["def f(x):\n"], code_eval.diffusion_config(16, steps=16), seeds=1)
    assert sum(row["tokens"] for row in order.values()) == 16  # one commit per slot
    assert all(0.0 <= row["mean_relative_step"] <= 1.0 for row in order.values())


def test_every_swept_setting_is_a_valid_config():
    settings = code_eval.sweep_settings(64, [1, 2, 4], [0.9, 0.5], [0.5, 2.0])
    assert [label for label, _ in settings][:3] == ["low_confidence 1/step", "low_confidence 2/step", "low_confidence 4/step"]
    assert {config.strategy for _, config in settings} == {"low_confidence", "threshold", "entropy_bound"}
