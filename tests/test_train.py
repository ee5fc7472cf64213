"""Training: resumable bit-for-bit, export loads through the Auto classes, the ELBO is weighted right."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dlm_core import evaluate, train
from dlm_core.models import CanvasConfig, CanvasLM, load_canvas

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n\n" * 40


def make_data(tmp_path):
    tokenizer = train.train_tokenizer([TEXT], vocab_size=300)
    data = tmp_path / "data"
    tokenizer.save_pretrained(data / "tokenizer")
    ids, chars = train.encode_plays(tokenizer, {"r&j": TEXT})
    np.save(data / "train.npy", ids)
    np.save(data / "validation.npy", ids[:400])
    stats = {
        "validation_plays": ["r&j"],
        "vocab_size": len(tokenizer),
        "train": {"plays": 1, "tokens": int(ids.size), "chars": chars},
        "validation": {"plays": 1, "tokens": 400, "chars": chars * 400 // ids.size},
    }
    (data / "stats.json").write_text(json.dumps(stats))
    return data


def run(data, out, objective, tokens, context=32):
    train.main([
        "train", "--objective", objective, "--data", str(data), "--out", str(out), "--tokens", str(tokens),
        "--width", "32", "--layers", "1", "--heads", "2", "--mlp", "64", "--context", str(context), "--batch-tokens", "128",
        "--eval-every", "2", "--eval-batches", "1", "--warmup", "2", "--decay-steps", "10", "--threads", "1",
    ])


def weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    data = make_data(tmp_path)
    for objective in ("diffusion", "edit", "ar"):
        straight, resumed = tmp_path / f"{objective}-straight", tmp_path / f"{objective}-resumed"
        run(data, straight, objective, 6 * 128)
        run(data, resumed, objective, 2 * 128)
        run(data, resumed, objective, 6 * 128)
        a, b = weights(straight), weights(resumed)
        assert all(torch.equal(a[name], b[name]) for name in a), objective
        log = [line for line in (resumed / "log.jsonl").read_text().splitlines() if line]
        assert len(log) >= 3


def test_export_loads_as_a_half_precision_model_folder(tmp_path):
    data = make_data(tmp_path)
    run(data, tmp_path / "ar", "ar", 4 * 128)
    train.main(["export", "--checkpoint", str(tmp_path / "ar" / "best.pt"), "--data", str(data), "--out", str(tmp_path / "m")])
    adapter = load_canvas(tmp_path / "m")
    assert adapter.kind == "autoregressive" and adapter.max_length == 32
    from safetensors import safe_open

    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as weights_file:
        assert {weights_file.get_tensor(k).dtype for k in weights_file.keys()} == {torch.float16}


def uniform_model(vocab: int, causal: bool) -> CanvasLM:
    model = CanvasLM(CanvasConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, causal=causal))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: every logit is 0, the prediction is uniform
    return model


def test_diffusion_elbo_of_a_uniform_model_is_length_times_log_vocab():
    vocab, length = 50, 40
    batch = torch.randint(0, vocab, (64, length), generator=torch.Generator().manual_seed(0))
    elbo = evaluate.diffusion_window_elbo(uniform_model(vocab, False), batch, 1, 32, torch.Generator().manual_seed(0))
    assert abs(elbo.mean().item() / (length * math.log(vocab)) - 1) < 0.02


def test_ar_nll_of_a_uniform_model_is_exact():
    vocab, length = 50, 40
    batch = torch.randint(0, vocab, (4, length), generator=torch.Generator().manual_seed(0))
    unigram = torch.full((vocab,), -math.log(vocab), dtype=torch.float64)
    nll = evaluate.ar_window_nll(uniform_model(vocab, True), batch, unigram)
    assert torch.allclose(nll.double(), torch.full((4,), length * math.log(vocab), dtype=torch.float64), rtol=1e-5)


def test_evaluate_command_reports_all_three_bounds(tmp_path):
    data = make_data(tmp_path)
    for objective in ("diffusion", "ar"):
        run(data, tmp_path / objective, objective, 4 * 128, context=96)
        train.main(["export", "--checkpoint", str(tmp_path / objective / "best.pt"), "--data", str(data),
                    "--out", str(tmp_path / f"m-{objective}")])
    out = tmp_path / "eval.json"
    evaluate.main(["--data", str(data), "--ar", str(tmp_path / "m-ar"), "--diffusion", str(tmp_path / "m-diffusion"),
                   "--window", "32", "--samples", "4", "--json", str(out), "--threads", "1",
                   "--generation", "--gen-length", "16", "--gen-seeds", "1", "--samples-md", str(tmp_path / "s.md"), "--write-cards"])
    report = json.loads(out.read_text())
    for key in ("unigram_bits_per_char", "ar_bits_per_char", "diffusion_bits_per_char", "diffusion_over_ar"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    assert report["windows"] == 400 // 32
    generation = report["generation"]
    for source in ("diffusion", "ar", "held_out_text"):
        assert generation[source]["token_entropy"] > 0 and generation[source]["gen_ppl_under_ar"] > 1
    assert (tmp_path / "s.md").read_text().count("```text") == 2 * 5 + 1  # 5 prompts x 2 models + infilling
    card = (tmp_path / "m-diffusion" / "README.md").read_text()
    assert f"| diffusion model (ELBO upper bound, 4 draws of t per window, s.e. {report['diffusion_bits_per_char_stderr']:.3f}) | {report['diffusion_bits_per_char']:.3f} |" in card
    assert "causal" in (tmp_path / "m-ar" / "README.md").read_text()


def test_sampling_sweep_scores_each_setting_and_rejects_bad_blocks(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sampling_sweep", Path(__file__).parents[1] / "benchmarks" / "sampling_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    data = make_data(tmp_path)
    for objective in ("diffusion", "ar"):
        run(data, tmp_path / objective, objective, 2 * 128, context=96)
        train.main(["export", "--checkpoint", str(tmp_path / objective / "best.pt"), "--data", str(data),
                    "--out", str(tmp_path / f"m-{objective}")])
    models = ["--diffusion", str(tmp_path / "m-diffusion"), "--ar", str(tmp_path / "m-ar"), "--threads", "1"]
    out = tmp_path / "sweep.json"
    assert sweep.main([*models, "--gen-length", "16", "--seeds", "1", "--blocks", "16", "4", "--order-temperatures", "0.5",
                       "--strategies", "low_confidence", "random", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["strategy"], r["block_length"], r["order_temperature"]) for r in rows] == [
        ("low_confidence", 16, 0.0), ("low_confidence", 4, 0.0), ("low_confidence", 16, 0.5), ("random", 16, 0.0)]
    for row in rows:
        assert row["gen_ppl_under_ar"] > 1 and row["token_entropy"] > 0 and 0 <= row["repeated_4gram_share"] <= 1
    table = capsys.readouterr().out
    assert table.count("\n| low_confidence |") == 3 and f"{rows[3]['repeated_4gram_share']:.1%}" in table
    for bad in (["--blocks", "5"], ["--strategies", "left_to_right"], ["--seeds", "0"], ["--order-temperatures", "-1"]):
        with pytest.raises(SystemExit) as error:
            sweep.main([*models, "--gen-length", "16", *bad])
        assert error.value.code == 2
        assert bad[0] in capsys.readouterr().err


class Recorder(torch.nn.Module):
    """A stand-in model that records the corrupted input and predicts uniformly."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size, self.seen = vocab_size, []

    def forward(self, ids):
        self.seen.append(ids.clone())
        return type("Out", (), {"logits": torch.zeros(*ids.shape, self.vocab_size, requires_grad=True)})()


@pytest.mark.parametrize("mask_only_fraction", [1.0, 0.0])
def test_corruption_loss_masks_and_replaces_with_ordinary_tokens_only(mask_only_fraction):
    vocab, mask_id = 50, 1
    noise_ids = torch.arange(3, vocab)
    tokens = torch.randint(3, vocab, (64, 40), generator=torch.Generator().manual_seed(0))
    model = Recorder(vocab)
    loss, per_sequence = train.corruption_loss(model, tokens, mask_id, noise_ids, torch.Generator().manual_seed(1),
                                               mask_only_fraction)
    noisy = model.seen[0]
    masked, changed = noisy == mask_id, (noisy != tokens) & (noisy != mask_id)
    assert masked.any()
    if mask_only_fraction == 1.0:
        assert not changed.any()  # masking alone: every visible token is the original
    else:
        assert changed.float().mean() > 0.1  # about half of the corruption is random tokens
        assert bool((noisy[changed] >= 3).all())  # never end-of-text, mask or pad as noise
    # A uniform model: every position costs log V, corrupted ones weighted 1 / rate, so the loss is at
    # least the plain cross-entropy over all positions (and finite).
    assert math.isfinite(loss.item()) and loss.item() >= math.log(vocab) - 1e-4
    assert per_sequence.shape == (64,)


def test_edit_objective_is_rejected_outside_its_range(tmp_path):
    data = make_data(tmp_path)
    with pytest.raises(SystemExit):
        train.main(["train", "--objective", "edit", "--data", str(data), "--out", str(tmp_path / "x"),
                    "--mask-only-fraction", "1.5"])
