"""Parallel-decoding training (dlm_core.distill): the canvas layout, the loss, teacher shards, resume."""

import json

import numpy as np
import torch

from dlm_core import distill, train
from dlm_core.models import CanvasConfig, CanvasLM, load_canvas
from tests.test_train import make_data

MASK = 3


def test_semi_ar_canvas_lays_out_blocks_as_at_inference_with_complementary_masks():
    generator = torch.Generator().manual_seed(0)
    rows = torch.arange(10, 10 + 4 * 40).reshape(4, 40)  # prompt 8 + 4 blocks of 8
    for _ in range(20):
        noisy, masked, targets = distill.semi_ar_canvas(rows, 8, 8, MASK, generator)
        assert noisy.shape == masked.shape == targets.shape == (8, 40)
        assert torch.equal(targets, torch.cat((rows, rows)))
        first, second = masked[:4], masked[4:]
        assert not (first & second).any()  # complementary: no slot scored twice
        union = first | second
        for row in range(4):
            block = torch.nonzero(union[row]).flatten()
            assert len(block) == 8 and block[0] >= 8 and block[0] % 8 == 0  # exactly one whole block
            start, end = int(block[0]), int(block[-1]) + 1
            for copy in (row, row + 4):
                assert torch.equal(noisy[copy, :start], rows[row, :start])  # prompt and earlier blocks clean
                assert (noisy[copy, end:] == MASK).all()  # later blocks fully masked
                assert (noisy[copy][masked[copy]] == MASK).all()


def test_student_canvas_leaves_a_multiple_of_student_k_clean_in_one_block():
    generator = torch.Generator().manual_seed(1)
    rows = torch.arange(10, 10 + 4 * 40).reshape(4, 40)  # prompt 8 + 4 blocks of 8
    seen = set()
    for _ in range(40):
        noisy, masked = distill.student_canvas(rows, 8, 8, 2, MASK, generator)
        for row in range(4):
            hidden = torch.nonzero(noisy[row] == MASK).flatten()
            start = int(hidden[0]) // 8 * 8  # the active block: the first with a mask
            assert start >= 8 and torch.equal(noisy[row, :start], rows[row, :start])
            assert (noisy[row, start + 8 :] == MASK).all()
            block_masks = int(masked[row].sum())
            assert masked[row].nonzero().min() >= start and masked[row].nonzero().max() < start + 8
            assert block_masks in (8, 6, 4, 2)  # block - j x student_k, never a fully clean block
            seen.add(block_masks)
            clean = ~masked[row, start : start + 8]
            assert torch.equal(noisy[row, start : start + 8][clean], rows[row, start : start + 8][clean])
    assert seen == {8, 6, 4, 2}


def test_commit_pass_commits_k_masked_slots_most_confident_first():
    generator = torch.Generator().manual_seed(0)
    logits = torch.zeros(2, 6, 5)
    logits[:, :, 1] = torch.tensor([0.0, 9.0, 1.0, 8.0, 2.0, 7.0])  # slots 1, 3, 5 are sure of token 1
    masked = torch.tensor([[False, True, True, True, True, True]] * 2)
    masked[1, 3] = False
    tokens, committed = distill.commit_pass(logits, masked, 2, generator, top_p=1.0, order_temperature=1e-4)
    assert committed.sum(1).tolist() == [2, 2] and not (committed & ~masked).any()
    assert committed[0].nonzero().flatten().tolist() == [1, 3]  # the two surest masked slots
    assert committed[1].nonzero().flatten().tolist() == [1, 5]  # slot 3 is not masked in row 1
    assert (tokens[committed] == 1).all()


def test_sdtt_target_is_the_pass_that_committed_each_slot():
    model = tiny_model().eval()
    noisy = torch.full((2, 12), MASK)
    noisy[:, :4] = torch.tensor([5, 6, 7, 8])
    masked = noisy == MASK
    # A teacher that commits every masked slot in its first pass: the target is the first pass itself,
    # so a student equal to the teacher has KL 0.
    target = distill.teacher_targets(model, noisy, masked, 8, torch.Generator().manual_seed(0))
    assert torch.allclose(target[masked], model(noisy).logits.float().log_softmax(-1)[masked])
    kl, stats = distill.sdtt_loss(model, noisy, masked, target)
    assert abs(kl.item()) < 1e-5 and stats["agree"] == 1.0
    # Two slots a pass: the other slots target the second pass, which saw the first pass's tokens.
    target = distill.teacher_targets(model, noisy, masked, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(noisy).logits.float()
        tokens, committed = distill.commit_pass(first, masked, 2, torch.Generator().manual_seed(0))
        second = model(torch.where(committed, tokens, noisy)).logits.float().log_softmax(-1)
        first = first.log_softmax(-1)
    assert torch.allclose(target[committed], first[committed])
    assert torch.allclose(target[masked & ~committed], second[masked & ~committed])
    assert not torch.allclose(target[masked & ~committed], first[masked & ~committed])
    assert distill.sdtt_loss(model, noisy, masked, target)[0].item() > 0


def tiny_model(vocab=16):
    torch.manual_seed(0)
    return CanvasLM(CanvasConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32, mask_token_id=MASK))


def test_certainty_forcing_lowers_entropy_only_where_the_student_is_right():
    model = tiny_model()
    noisy = torch.full((2, 12), MASK)
    masked = torch.ones(2, 12, dtype=torch.bool)
    logits = model(noisy).logits[masked]
    right = logits.argmax(-1)
    wrong = (right + 1) % 16
    # Where every target is wrong, the entropy term contributes nothing: loss(beta) == loss(0).
    targets = wrong.reshape(2, 12)
    assert torch.isclose(distill.certainty_forcing_loss(model, noisy, masked, targets, 5.0)[0],
                         distill.certainty_forcing_loss(model, noisy, masked, targets, 0.0)[0])
    # Where every target is the argmax, beta adds exactly beta x the mean entropy.
    targets = right.reshape(2, 12)
    log_probs = logits.float().log_softmax(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    with_beta, stats = distill.certainty_forcing_loss(model, noisy, masked, targets, 2.0)
    without, _ = distill.certainty_forcing_loss(model, noisy, masked, targets, 0.0)
    assert torch.isclose(with_beta - without, 2.0 * entropy, atol=1e-5)
    assert stats["accuracy"] == 1.0


def test_generate_then_train_resumes_exactly_and_exports(tmp_path):
    data = make_data(tmp_path)
    train.main(["train", "--objective", "diffusion", "--data", str(data), "--out", str(tmp_path / "base"),
                "--tokens", "256", "--width", "32", "--layers", "1", "--heads", "2", "--mlp", "64", "--context", "48",
                "--batch-tokens", "128", "--eval-every", "2", "--eval-batches", "1", "--threads", "1"])
    train.main(["export", "--checkpoint", str(tmp_path / "base" / "checkpoint.pt"), "--data", str(data),
                "--out", str(tmp_path / "base-model")])
    teacher = tmp_path / "teacher"
    common = ["--data", str(data), "--prompt-lengths", "4", "8"]
    distill.main(["generate", "--teacher", str(tmp_path / "base-model"), "--out", str(teacher), "--shards", "2",
                  "--shard-size", "4", "--gen-length", "16", "--threads", "1", *common])
    shards = distill.load_shards(teacher, "train")
    assert [s.shape for s in shards] == [(4, 1 + 4 + 16), (4, 1 + 8 + 16)]
    model = load_canvas(tmp_path / "base-model")
    for shard in shards:
        prompt = int(shard[0, 0])
        assert (shard[:, 1:] != model.mask_id).all()  # the teacher finished every canvas
        assert (shard[:, 1:] < model.vocab_size).all() and (shard[:, 1:] >= 0).all()
        assert prompt in (4, 8)
    # A second call finds the shards and writes nothing new (resumable generation).
    mtimes = [p.stat().st_mtime_ns for p in sorted(teacher.glob("*.npy"))]
    distill.main(["generate", "--teacher", str(tmp_path / "base-model"), "--out", str(teacher), "--shards", "2",
                  "--shard-size", "4", "--gen-length", "16", "--threads", "1", *common])
    assert [p.stat().st_mtime_ns for p in sorted(teacher.glob("*.npy"))] == mtimes

    def run(out, steps, *objective):
        distill.main(["train", "--init", str(tmp_path / "base-model"), "--teacher-data", str(teacher), "--out", str(out),
                      "--steps", str(steps), "--batch", "2", "--block", "8", "--gen-length", "16", "--eval-every", "2",
                      "--eval-batches", "1", "--warmup", "1", "--decay-steps", "6", "--threads", "1", "--no-bf16",
                      *common, *objective])
        return torch.load(out / "checkpoint.pt", weights_only=False)["model"]

    # SDTT (real text only, teacher = the starting model): resumes exactly too, and logs its KL.
    sdtt = ["--objective", "sdtt", "--teacher-k", "2", "--student-k", "4", "--teacher-fraction", "0"]
    straight = run(tmp_path / "sdtt-straight", 4, *sdtt)
    run(tmp_path / "sdtt-resumed", 2, *sdtt)
    resumed = run(tmp_path / "sdtt-resumed", 4, *sdtt)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    log = [json.loads(line) for line in (tmp_path / "sdtt-straight" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 4] and all(r["val_kl"] >= 0 for r in log)
    assert (tmp_path / "sdtt-straight" / "best.pt").exists()

    straight = run(tmp_path / "straight", 6)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 6)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 4, 6]
    assert all(0 <= r["val_confident"] <= 1 and np.isfinite(r["val_real_diffusion_loss"]) for r in log)
    distill.main(["export", "--checkpoint", str(tmp_path / "straight" / "best.pt"), "--data", str(data),
                  "--out", str(tmp_path / "parallel")])
    assert load_canvas(tmp_path / "parallel").kind == "diffusion"
    # The model card reads every number from the log, the training summary and the frontier report.
    (tmp_path / "straight" / "log-side.jsonl").write_text((tmp_path / "straight" / "log.jsonl").read_text())
    figures = {"tokens_per_forward": 2.0, "gen_ppl_under_ar": 61.5, "token_entropy": 4.0, "repeated_4gram_share": 0.05,
               "known_word_share": 0.9}
    report = {"meta": {"length": 16, "prompts": ["x"], "seeds": 1, "temperature": 1.0, "top_p": 0.95, "block": 8,
                       "cache": "dual"},
              "ar": {"model": "ar", "setting": "AR twin", **figures},
              "rows": [{"model": "parallel", "setting": "low_confidence 2/step", **figures},
                       {"model": "unrelated", "setting": "threshold 0.5", **figures}]}
    (tmp_path / "frontier.json").write_text(json.dumps(report))
    distill.main(["card", "--model", str(tmp_path / "parallel"), "--log", str(tmp_path / "straight" / "log.jsonl"),
                  "--frontier", str(tmp_path / "frontier.json")])
    card = (tmp_path / "parallel" / "README.md").read_text()
    best = min(log, key=lambda r: r["val_ce"])
    assert f"best (step {best['step']})" in card and f"{best['val_confident']:.1%}" in card
    assert "low_confidence 2/step" in card and "61.5" in card and "unrelated" not in card
    assert "log-side.jsonl" in card and "{" not in card.split("---", 2)[2].replace("{}", "")
