"""Our built-in models speak transformers' draft-streamer protocol: ``sampler.generate(...,
streamer=TextDiffusionStreamer(tokenizer))`` prints drafts for the tiny built-in model as for
DiffusionGemma, and what it finally prints is our final text; our own ``DraftRecorder`` (the protocol's
other end) records the same run back."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import TextDiffusionStreamer

from dlm_core.models.bridge import DraftRecorder, StepRecorder
from dlm_core.sampler import SamplerConfig, generate
from dlm_core.trajectory import record

pytestmark = pytest.mark.usefixtures("one_thread")

SAVE, CLEAR = "\0337", "\0338\033[J"  # TextDiffusionStreamer: save the cursor before a draft, clear it after
DRAFT = re.compile(re.escape(SAVE) + r"\033\[33m(.*?)\033\[0m" + re.escape(CLEAR), re.S)


def printed(out: str) -> tuple[str, list[str]]:
    """(the text a terminal finally shows, the drafts it showed on the way) from captured stdout."""
    drafts = DRAFT.findall(out)
    return DRAFT.sub("", out), drafts


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(gen_length=24, steps=8, temperature=0.7, seed=3, record_topk=True),  # one block
        SamplerConfig(gen_length=24, steps=12, block_length=8, seed=1, record_topk=True),  # three blocks
        SamplerConfig(gen_length=16, steps=16, strategy="threshold", threshold=0.3, seed=2, record_topk=True),
    ],
)
def test_text_diffusion_streamer_prints_drafts_and_our_final_text(tiny_model, capsys, config):
    final = generate(tiny_model, "ROMEO:\n", config, streamer=TextDiffusionStreamer(tiny_model.codec))
    shown, drafts = printed(capsys.readouterr().out)
    ours = record(tiny_model, "ROMEO:\n", config)
    assert final.tokens.tolist() == ours.final.tokens.tolist()
    assert shown == ours.final_text + "\n"  # end() ends the line
    assert len(drafts) == ours.num_steps  # one draft per model step
    blocks = -(-config.gen_length // (config.block_length or config.gen_length))
    assert all(len(d) <= config.gen_length // blocks for d in drafts)  # the active block's draft only
    expected = []  # each step's draft of its block: written tokens, the step's proposal where still masked
    size = config.gen_length // blocks
    for state in ours.states[1:]:
        block = slice(state.prompt_length + size * state.block, state.prompt_length + size * (state.block + 1))
        draft = np.where(state.masked[block] & (state.proposal[block] >= 0), state.proposal[block], state.tokens[block])
        expected.append(tiny_model.codec.decode(draft.tolist()))
    assert drafts == expected


class CallLog:
    """A streamer that logs the protocol's calls: ("put", ids) / ("draft", ids) / ("end",)."""

    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(("put", value[0].tolist()))

    def put_draft(self, value=None, **_):
        self.calls.append(("draft", value[0].tolist()))

    def end(self):
        self.calls.append(("end",))


def test_the_calls_follow_diffusion_gemmas_generate(tiny_model):
    """put(prompt), then per block its drafts followed by put(block), end() last: the order in which
    DiffusionGemma's generate() calls a streamer."""
    config = SamplerConfig(gen_length=24, steps=12, block_length=8, seed=1)
    log = CallLog()
    final = generate(tiny_model, "ROMEO:\n", config, streamer=log)
    ours = record(tiny_model, "ROMEO:\n", config)
    kinds = "".join(call[0][0] for call in log.calls)  # p(ut) d(raft) e(nd)
    per_block = [sum(1 for s in ours.states[1:] if s.block == b) for b in range(3)]
    assert final.answer_end == final.length  # no end of text in this run: every block is put
    assert kinds == "p" + "".join("d" * n + "p" for n in per_block) + "e"
    puts = [call[1] for call in log.calls if call[0] == "put"]
    assert puts[0] == final.tokens[: final.prompt_length].tolist()
    assert sum(puts[1:], []) == final.tokens[final.prompt_length : final.answer_end].tolist()


def test_our_draft_recorder_reads_the_run_back_with_logits(tiny_model):
    """The protocol's other end: ``DraftRecorder`` (with ``_takes_logits``) records what we stream."""
    config = SamplerConfig(gen_length=16, steps=8, block_length=8, seed=5, record_topk=True)
    states: list = []
    recorder = DraftRecorder(
        lambda ids: StepRecorder(ids, 16, mask_id=tiny_model.mask_id, eos_ids=tiny_model.eos_ids, uniform=True,
                                 sink=states.append),
        canvas_length=8, takes_logits=True,
    )
    final = generate(tiny_model, "ROMEO:\n", config, streamer=recorder)
    assert recorder.ended and recorder.block == 2
    end = final.answer_end
    assert states[-1].tokens[:end].tolist() == final.tokens[:end].tolist()
    # every model step arrives as one draft (argmax of the logits we rebuilt = our step's draft)
    ours = record(tiny_model, "ROMEO:\n", config).states
    steps = [after for before, after in zip(states, states[1:], strict=False) if after.nfe > before.nfe]
    assert len(steps) == len(ours) - 1
    for theirs, mine in zip(steps, ours[1:], strict=True):
        block = slice(mine.prompt_length + 8 * mine.block, mine.prompt_length + 8 * (mine.block + 1))
        expected = np.where(mine.masked[block] & (mine.proposal[block] >= 0), mine.proposal[block],
                            mine.tokens[block])
        assert theirs.tokens[block].tolist() == expected.tolist()
        written = ~mine.masked[block]
        assert np.allclose(theirs.prob[block][written], 1.0)  # a written token: all its probability


def test_placeholders_are_refused_with_a_clear_message(tiny_model):
    with pytest.raises(ValueError, match="placeholders"):
        generate(tiny_model, "The [MASK:3] sat", SamplerConfig(gen_length=4, steps=4),
                 streamer=TextDiffusionStreamer(tiny_model.codec))


def test_a_transformers_tokenizer_codec_works_as_the_streamers_tokenizer(capsys):
    """The built-in models' ``HFCodec`` decodes one id too, as ``TextStreamer`` asks after a newline
    (``decode(token_cache[-1])``), so ``TextDiffusionStreamer(model.codec)`` works for them, not only
    for the character codec of the tiny model."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from dlm_core.models.base import HFCodec

    codec = HFCodec(AutoTokenizer.from_pretrained(Path(__file__).resolve().parents[1] / "assets" / "canvas-diffusion"))
    ids = codec.encode("ROMEO:\nWell, sir")
    assert codec.decode(ids[0]) == codec.decode([ids[0]]) == codec.token_text(ids[0])
    streamer = TextDiffusionStreamer(codec)
    streamer.put(torch.tensor([ids]))  # the newline makes it decode a single id
    streamer.put_draft(torch.tensor([ids[:3]]))
    streamer.end()
    shown, drafts = printed(capsys.readouterr().out)
    assert shown == "ROMEO:\nWell, sir\n" and drafts == [codec.decode(ids[:3])]
