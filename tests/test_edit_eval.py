"""The edit evaluation (``dlm_core.edit_eval``): each figure on stand-in models whose answer is known,
and the whole report on the tiny models."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dlm_core import edit_eval
from dlm_core.models import tiny_random_model
from dlm_core.sampler import SamplerConfig, noise_ids
from dlm_core.state import Blank, step_state

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = tiny_random_model(seed=0)
VOCAB = frozenset({"the", "a"})


class Oracle:
    """Predicts the original window (it is told it): recovers every replaced token, edits no clean one."""

    def __init__(self, original: torch.Tensor, base=TINY):
        self.original, self.base = original, base
        self.mask_id, self.eos_ids, self.vocab_size, self.device = base.mask_id, base.eos_ids, base.vocab_size, "cpu"

    def logits(self, ids, attention_mask=None):
        return torch.nn.functional.one_hot(self.original[: len(ids)], self.vocab_size).float() * 20


class Copier(Oracle):
    """Predicts whatever it sees: never edits, never recovers."""

    def logits(self, ids, attention_mask=None):
        return torch.nn.functional.one_hot(ids, self.vocab_size).float() * 20


def some_windows(count=6, length=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    noise = noise_ids(TINY)
    return noise[torch.randint(len(noise), (count, length), generator=generator)]


def test_corruption_figures_of_an_oracle_and_a_copier():
    windows = some_windows()
    oracle = edit_eval.corruption_metrics(Oracle(windows), windows, 0.3, torch.Generator().manual_seed(1))
    copier = edit_eval.corruption_metrics(Copier(windows), windows, 0.3, torch.Generator().manual_seed(1))
    assert oracle["replaced_positions"] == copier["replaced_positions"] > 0.2 * windows.numel()
    assert oracle["recovery_accuracy"] == 1.0 and oracle["false_edit_rate"] == 0.0
    assert copier["recovery_accuracy"] == 0.0 and copier["false_edit_rate"] == 0.0
    assert copier["ce_replaced"] > 15 > oracle["ce_replaced"] and oracle["ce_clean"] == pytest.approx(copier["ce_clean"])
    # The rate is the share replaced (less the draws that hit the original token).
    low = edit_eval.corruption_metrics(Copier(windows), windows, 0.1, torch.Generator().manual_seed(1))
    assert 0.05 < low["replaced_positions"] / windows.numel() < 0.15


def test_the_likelihood_report_pools_batches_like_one_pass():
    windows = some_windows(count=5)
    one = edit_eval.likelihood_report(TINY, windows, 1.0, 2, [0.3], seed=0, batch=5)
    split = edit_eval.likelihood_report(TINY, windows, 1.0, 2, [0.3], seed=0, batch=2)
    assert one["mask_elbo_bits_per_char"] > 0 and math.isfinite(one["mask_elbo_stderr"])
    a, b = one["random_0.3"], split["random_0.3"]
    assert a["replaced_positions"] + a["clean_positions"] == windows.numel()
    # Different batches draw different corruptions, so only the sizes and the scale agree.
    assert 0 <= b["recovery_accuracy"] <= 1 and abs(a["ce_all"] - b["ce_all"]) < 1.0


def test_held_out_windows_cover_the_stream_evenly():
    stream = np.arange(1000)
    windows = edit_eval.held_out_windows(stream, 10, 4)
    assert windows[:, 0].tolist() == [0, 330, 660, 990] and windows.shape == (4, 10)
    with pytest.raises(ValueError):
        edit_eval.held_out_windows(stream, 2000, 1)


# -- edit precision ---------------------------------------------------------------------------------------


def state(tokens, edited=(), edited_from=(), eos=99):
    tokens = np.asarray(tokens, dtype=np.int64)
    n = len(tokens)
    fixed = np.zeros(n, dtype=bool)
    fixed[:2] = True
    return step_state(step=0, block=0, tokens=tokens, masked=np.zeros(n, dtype=bool), fixed=fixed, prompt_length=2,
                      eos_ids=(eos,), blank=Blank.of(n, False), edited=edited, edited_from=edited_from)


def test_final_edits_are_the_last_surviving_edit_per_position_before_the_end():
    states = [
        state([1, 2, 3, 4, 5, 6]),
        state([1, 2, 7, 4, 5, 6], edited=[2], edited_from=[3]),  # 3 -> 7, then 7 -> 8: only the last counts
        state([1, 2, 8, 9, 5, 6], edited=[2, 3], edited_from=[7, 4]),  # 4 -> 9, undone below by a commit
        state([1, 2, 8, 4, 99, 6], edited=[5], edited_from=[0]),  # after the end of text: not in the text
    ]
    assert edit_eval.final_edits(states) == [(2, 7, 8)]


class PrefersFive:
    """An AR scorer stand-in: token 5 is likely everywhere, every other token equally unlikely."""

    max_length, device = 64, "cpu"

    def logits(self, ids):
        logits = torch.zeros((*ids.shape, 12))
        logits[..., 5] = 4.0
        return logits


def test_edit_precision_counts_edits_that_lower_the_twins_nll():
    good = [state([1, 2, 3, 3]), state([1, 2, 5, 3], edited=[2], edited_from=[3])]  # 3 -> 5: better
    bad = [state([1, 2, 5, 5]), state([1, 2, 5, 7], edited=[3], edited_from=[5])]  # 5 -> 7: worse
    result = edit_eval.edit_precision(PrefersFive(), [good, bad, [state([1, 2, 3, 4])]])
    assert result["edits"] == 2 and result["precision"] == 0.5 and result["edits_per_sample"] == pytest.approx(2 / 3)
    assert result["mean_nll_change"] == pytest.approx(0.0, abs=1e-6)  # +4 and -4 nats
    only_good = edit_eval.edit_precision(PrefersFive(), [good])
    assert only_good["precision"] == 1.0 and only_good["mean_nll_change"] == pytest.approx(-4.0, abs=1e-4)
    assert math.isnan(edit_eval.edit_precision(PrefersFive(), [[state([1, 2, 3])]])["precision"])


# -- the whole report ---------------------------------------------------------------------------------------


def tiny_args(**changes):
    args = edit_eval.parser().parse_args(
        ["--windows", "3", "--window", "24", "--samples", "2", "--prompts", "2", "--seeds", "1", "--gen-length", "12",
         "--gen-block", "0", "--taus", "0.05", "0.5", "--uniform-steps", "6", "--uniform-gamma", "0.5"]
    )
    return SimpleNamespace(**{**vars(args), **changes})


@pytest.fixture
def data_dir(tmp_path):
    noise = noise_ids(TINY).numpy()
    stream = noise[np.random.default_rng(0).integers(len(noise), size=600)]
    np.save(tmp_path / "validation.npy", stream)
    (tmp_path / "stats.json").write_text(json.dumps({"validation": {"chars": 900}}))
    return tmp_path


def test_the_report_measures_every_variant_of_every_model(data_dir):
    models = {"tiny": TINY, "other": tiny_random_model(seed=1)}
    results, text = edit_eval.report(models, tiny_random_model(seed=0, causal=True), data_dir, tiny_args(), VOCAB)
    assert results["data"]["chars_per_token"] == 1.5
    for name in models:
        entry = results["models"][name]
        assert set(entry["likelihood"]) == {"mask_elbo_bits_per_char", "mask_elbo_stderr", "random_0.1", "random_0.3"}
        assert list(entry["sampling"]) == ["mask", "mask+edit tau=0.05", "mask+edit tau=0.5", "uniform gamma=0.5"]
        assert entry["sampling"]["uniform gamma=0.5"]["settings"]["noise"] == "uniform"
        assert entry["sampling"]["uniform gamma=0.5"]["nfe_per_sample"] == 6
        assert "edit_precision" not in entry["sampling"]["mask"]
        assert entry["sampling"]["mask+edit tau=0.05"]["edit_precision"]["edits"] > 0  # a low tau edits the noise
        for variant in entry["sampling"].values():
            assert variant["gen_ppl_under_ar"] > 1 and 0 <= variant["repeated_4gram_share"] <= 1
    assert text.count("| tiny |") == 1 + 4 and "## Samples" in text


def test_main_writes_json_and_markdown(data_dir, tmp_path):
    loaded = {"edit": TINY, "base": tiny_random_model(seed=1), "ar": tiny_random_model(seed=0, causal=True)}
    argv = ["--model", "edit", "--baseline", "", "--ar", "ar", "--data", str(data_dir), "--windows", "2", "--window",
            "16", "--samples", "1", "--prompts", "1", "--seeds", "1", "--gen-length", "8", "--gen-block", "0",
            "--taus", "0.5", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    results = edit_eval.main(argv, load=loaded.__getitem__)
    assert list(results["models"]) == ["edit"] and results["command"].endswith("r.md")
    assert json.loads((tmp_path / "r.json").read_text())["models"]["edit"]["sampling"]["mask"]["nfe_per_sample"] == 8
    assert "| edit | uniform gamma=0.1 |" in (tmp_path / "r.md").read_text()
    with pytest.raises(SystemExit):
        edit_eval.main([*argv, "--taus", "1.5"], load=loaded.__getitem__)


def test_app_sampling_is_the_apps():
    config = edit_eval.app_sampling(64, 32)
    assert isinstance(config, SamplerConfig) and config.temperature == 1.0 and config.top_p == 0.95


def test_the_card_carries_the_measured_numbers_and_the_commands(data_dir, tmp_path):
    folder = tmp_path / "canvas-edit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2,
                                                    "intermediate_size": 128, "max_position_embeddings": 512}))
    args = {"command": "train", "objective": "edit", "mask_only_fraction": 0.5, "out": "runs/canvas-edit",
            "init_from": "runs/canvas-diffusion/checkpoint.pt", "lr": 3e-4, "warmup": 50, "decay_steps": 1500,
            "threads": 1, "bf16": True, "tokens": 0, "func": None}
    (folder / "training.json").write_text(json.dumps({"step": 700, "tokens": 2_700_000, "seconds": 3600.0,
                                                      "best": 4.25, "args": args}))
    loaded = {str(folder): TINY, "base/canvas-diffusion": tiny_random_model(seed=1),
              "ar": tiny_random_model(seed=0, causal=True)}
    argv = ["--model", str(folder), "--baseline", "base/canvas-diffusion", "--ar", "ar", "--data", str(data_dir),
            "--windows", "2", "--window", "16", "--samples", "1", "--prompts", "1", "--seeds", "1", "--gen-length",
            "8", "--gen-block", "0", "--taus", "0.05", "--card", "--checkpoint-note", "; step 700 of a run in progress"]
    results = edit_eval.main(argv, load=loaded.__getitem__)
    card = (folder / "README.md").read_text()
    ours = results["models"]["canvas-edit"]
    assert f"{ours['likelihood']['random_0.3']['recovery_accuracy']:.1%}" in card
    assert f"{ours['likelihood']['mask_elbo_bits_per_char']:.3f}" in card
    assert f"{ours['sampling']['mask']['gen_ppl_under_ar']:.1f}" in card
    assert "| canvas-diffusion | uniform gamma=0.5 |" in card and "700 optimiser steps" in card
    assert ("train --objective edit --mask-only-fraction 0.5 --out runs/canvas-edit --init-from "
            "runs/canvas-diffusion/checkpoint.pt --lr 0.0003 --warmup 50 --decay-steps 1500 --threads 1 --bf16 "
            "--tokens 0") in card
    assert "python -m dlm_core.edit_eval --model" in card and "--card" in card
    assert "step 700 of a run in progress" in card and "{" not in card.split("## Evaluation")[1].split("```")[0]
