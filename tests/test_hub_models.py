"""Hub adapters (LLaDA, Dream, masked LMs) on tiny local stand-ins: no hub model is ever downloaded.

Every hub model in the registry (LLaDA 8B Instruct, LLaDA 1.5, Dream 7B Instruct, ModernBERT-large
chat) is verified here only through stand-ins that reproduce its conventions; the real checkpoints
cannot be fetched in this environment.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch
from hub_fixtures import (
    add_auto_map,
    build_bert,
    build_dream_standin,
    build_llada_standin,
    build_modernbert,
    build_roberta,
)

from dlm_core.models import hub, registry
from dlm_core.models.hub import DreamAdapter, LLaDAAdapter, MaskedLMAdapter, ModelRefusedError
from ui import hosting

pytestmark = pytest.mark.usefixtures("fresh_registry")  # tests/conftest.py

MLM_BUILDERS = {"bert": build_bert, "roberta": build_roberta, "modernbert": build_modernbert}


@pytest.fixture(scope="module")
def mlm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    return {name: build(root / name) for name, build in MLM_BUILDERS.items()}


@pytest.fixture
def remote_code_sandbox(tmp_path, monkeypatch):
    """Dynamic modules go to a temp folder; returns a function that allow-lists a local folder."""
    import transformers.dynamic_module_utils as dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # transformers appends the modules folder
    monkeypatch.setattr(hub, "TRUSTED_REMOTE_CODE", dict(hub.TRUSTED_REMOTE_CODE))

    def allow(folder, revision="local-test"):
        hub.TRUSTED_REMOTE_CODE[str(folder)] = revision
        return revision

    return allow


def standin_spec(key: str, standin, revision: str, **changes) -> registry.ModelSpec:
    """The registry entry's conventions, pointed at a stand-in folder with its (small) token ids."""
    return dataclasses.replace(
        registry.REGISTRY[key],
        repo_id=str(standin.folder),
        revision=revision,
        mask_id=standin.mask_id,
        eos_ids=(standin.eos_id, standin.eot_id),
        params_b=None,
        **changes,
    )


def raw_logits(model, input_ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=input_ids, **kwargs).logits.float()


# ------------------------------------------------------------------------------------------------
# Masked LMs through the registry (the same path as a typed hub id)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # three stand-in folders through from_pretrained (~0.3 s each)
@pytest.mark.parametrize("family", sorted(MLM_BUILDERS))
def test_mlm_loads_through_registry_with_tokenizer_conventions(mlm_folders, family):
    adapter = registry.load_model(f"mlm:{mlm_folders[family]}", device="cpu")
    tokenizer = adapter.tokenizer
    assert isinstance(adapter, MaskedLMAdapter)
    assert adapter.kind == "diffusion"
    assert adapter.mask_id == tokenizer.mask_token_id
    assert tokenizer.sep_token_id in adapter.eos_ids
    assert adapter.vocab_size == adapter.model.config.vocab_size
    # 128 usable positions in every fixture, minus the [CLS]/[SEP] wrapper.
    assert adapter.max_length == 126
    assert adapter.model.dtype == torch.float32


@pytest.mark.slow  # three stand-in folders through from_pretrained, each forward compared
@pytest.mark.parametrize("family", sorted(MLM_BUILDERS))
def test_mlm_logits_are_aligned_with_the_model(mlm_folders, family):
    adapter = registry.load_model(f"mlm:{mlm_folders[family]}", device="cpu")
    ids = adapter.encode("the quick brown fox")
    canvas = torch.tensor([ids[:2] + [adapter.mask_id] + ids[3:] + [adapter.mask_id] * 3])
    tokenizer = adapter.tokenizer
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    wrapped = torch.cat([torch.tensor([[first]]), canvas, torch.tensor([[tokenizer.sep_token_id]])], dim=1)
    expected = raw_logits(adapter.model, wrapped)[:, 1:-1]
    got = adapter.logits(canvas)
    assert got.shape == (1, canvas.shape[1], adapter.vocab_size)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    # Padding support: a full attention mask gives the same rows; a padded batch keeps its shape.
    torch.testing.assert_close(adapter.logits(canvas, torch.ones_like(canvas)), expected)
    padded = adapter.logits(
        canvas.repeat(2, 1), torch.tensor([[1] * canvas.shape[1], [1] * 4 + [0] * (canvas.shape[1] - 4)])
    )
    assert padded.shape == (2, canvas.shape[1], adapter.vocab_size)


def test_prompt_encoding_has_no_special_tokens(mlm_folders):
    adapter = registry.load_model(f"mlm:{mlm_folders['bert']}", device="cpu")
    ids = adapter.encode(adapter.prepare_prompt("the quick brown fox"))
    assert adapter.tokenizer.cls_token_id not in ids and adapter.tokenizer.sep_token_id not in ids
    assert adapter.prepare_prompt("hello") == "hello"  # typed MLMs get no chat template


def test_wordpiece_canvas_text_reads_as_words(mlm_folders):
    adapter = registry.load_model(f"mlm:{mlm_folders['bert']}", device="cpu")
    ids = adapter.encode("the quick zqx")  # "zqx" is not a word in the vocab: z ##q ##x
    pieces = [adapter.token_text(i) for i in ids]
    assert "".join(pieces) == " the quick zqx"
    assert adapter.token_text(adapter.mask_id) == "[MASK]"


def test_chat_masked_lm_uses_template_and_bare_canvas(tmp_path):
    """dLLM's ModernBERT chat conventions: chat template (fallback when the tokenizer has none),
    no [CLS]/[SEP] wrapping, [SEP] and [PAD] end the answer."""
    folder = build_modernbert(tmp_path / "chat")
    spec = dataclasses.replace(registry.REGISTRY["modernbert-chat"], repo_id=str(folder), mask_id=None, eos_ids=(3,))
    adapter = hub.load_hub_model(spec, device="cpu", available_bytes=10**12)
    assert adapter.prepare_prompt("Hi") == "[Question]\nHi\n[/Question]\n\n[Answer]\n"
    assert adapter.max_length == 128
    assert set(adapter.eos_ids) == {adapter.tokenizer.sep_token_id, 3}
    canvas = torch.tensor([adapter.encode("the fox") + [adapter.mask_id] * 3])
    torch.testing.assert_close(adapter.logits(canvas), raw_logits(adapter.model, canvas))


def test_chat_masked_lm_prefers_the_tokenizers_own_template(tmp_path):
    folder = build_modernbert(tmp_path / "chat", chat_template="<<{{ messages[0]['content'] }}>>")
    spec = dataclasses.replace(registry.REGISTRY["modernbert-chat"], repo_id=str(folder), mask_id=None)
    adapter = hub.load_hub_model(spec, device="cpu", available_bytes=10**12)
    assert adapter.prepare_prompt("Hi") == "<<Hi>>"


def test_registry_mask_id_is_checked_against_the_tokenizer(tmp_path):
    folder = build_modernbert(tmp_path / "chat")
    spec = dataclasses.replace(registry.REGISTRY["modernbert-chat"], repo_id=str(folder))  # says 50284
    with pytest.raises(ModelRefusedError, match="mask id 50284"):
        hub.load_hub_model(spec, device="cpu", available_bytes=10**12)


def test_typed_id_with_auto_map_is_refused_before_any_code_runs(tmp_path):
    folder = add_auto_map(build_bert(tmp_path / "custom"))
    with pytest.raises(ModelRefusedError) as error:
        registry.load_model(f"mlm:{folder}", device="cpu")
    message = str(error.value)
    assert "needs remote code" in message and "auto_map" in message
    assert "GSAI-ML/LLaDA-8B-Instruct" in message  # says what *is* trusted


def test_typed_id_that_is_not_a_masked_lm_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(folder)
    with pytest.raises(ModelRefusedError, match="not a masked language model"):
        registry.load_model(f"mlm:{folder}", device="cpu")


def test_typed_mlm_memory_estimate_comes_from_weight_files(mlm_folders):
    spec = registry.get_spec(f"mlm:{mlm_folders['bert']}")
    with pytest.raises(hub.ModelTooLargeError, match="needs about"):
        hub.load_hub_model(spec, device="cpu", available_bytes=1000)


# ------------------------------------------------------------------------------------------------
# LLaDA conventions on a remote-code stand-in
# ------------------------------------------------------------------------------------------------


def test_llada_adapter_conventions(tmp_path, remote_code_sandbox):
    standin = build_llada_standin(tmp_path / "llada")
    spec = standin_spec("llada-8b-instruct", standin, remote_code_sandbox(standin.folder))
    adapter = hub.load_hub_model(spec, device="cpu")
    assert isinstance(adapter, LLaDAAdapter)
    assert type(adapter.model).__module__.startswith("transformers_modules")  # the folder's own code ran
    assert adapter.mask_id == standin.mask_id  # from the registry, not the tokenizer (LLaDA has none)
    assert {standin.eos_id, standin.eot_id} <= set(adapter.eos_ids)  # end of text and end of turn
    assert adapter.max_length == 256  # registry says 4096; the config's window is smaller
    prompt = adapter.prepare_prompt("Hi there")
    assert (
        prompt == "<|startoftext|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    ids = adapter.encode(prompt)
    assert ids[0] == standin.bos_id and ids.count(standin.bos_id) == 1
    # No shift: row i is the model's row i.
    canvas = torch.tensor([ids + [adapter.mask_id] * 5])
    torch.testing.assert_close(adapter.logits(canvas), raw_logits(adapter.model, canvas))


def test_llada_spec_without_allow_list_entry_is_refused(tmp_path, remote_code_sandbox):
    standin = build_llada_standin(tmp_path / "llada")
    spec = standin_spec("llada-8b-instruct", standin, "local-test")  # not allow-listed
    with pytest.raises(ModelRefusedError, match="not in the allow-list"):
        hub.load_hub_model(spec, device="cpu")
    remote_code_sandbox(standin.folder, revision="a" * 40)
    with pytest.raises(ModelRefusedError, match="not in the allow-list"):  # pinned to another revision
        hub.load_hub_model(spec, device="cpu")


def test_allow_listed_repo_with_trust_flag_off_loads_no_remote_code(tmp_path, remote_code_sandbox):
    standin = build_llada_standin(tmp_path / "llada")
    spec = standin_spec("llada-8b-instruct", standin, remote_code_sandbox(standin.folder), trust_remote_code=False)
    with pytest.raises(ModelRefusedError, match="needs remote code"):
        hub.load_hub_model(spec, device="cpu")


# ------------------------------------------------------------------------------------------------
# Dream conventions on a remote-code stand-in
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def dream(tmp_path, remote_code_sandbox):
    standin = build_dream_standin(tmp_path / "dream")
    spec = standin_spec("dream-7b-instruct", standin, remote_code_sandbox(standin.folder))
    return standin, hub.load_hub_model(spec, device="cpu")


def test_dream_adapter_shifts_logits_by_one(dream):
    standin, adapter = dream
    assert isinstance(adapter, DreamAdapter)
    assert adapter.mask_id == standin.mask_id
    assert {standin.eos_id, standin.eot_id} <= set(adapter.eos_ids)
    canvas = torch.tensor([adapter.encode("the quick brown fox") + [adapter.mask_id] * 4])
    raw = raw_logits(adapter.model, canvas, attention_mask="full")
    got = adapter.logits(canvas)
    assert got.shape == raw.shape
    torch.testing.assert_close(got[:, 1:], raw[:, :-1])  # row i = raw row i-1
    torch.testing.assert_close(got[:, 0], raw[:, 0])  # row 0 duplicates raw row 0 (Dream's convention)
    assert not torch.allclose(got[:, 1:], raw[:, 1:])  # and the shift is real


def test_dream_attention_mask_follows_dreams_sampler(dream):
    _, adapter = dream
    calls = adapter.model.record_calls
    canvas = torch.tensor([adapter.encode("the quick brown fox") + [adapter.mask_id] * 2])
    calls.clear()
    adapter.logits(canvas)
    assert calls[-1]["attention_mask"] == "full" and calls[-1]["position_ids"] is None
    mask = torch.ones_like(canvas)
    mask[0, :2] = 0  # left padding
    adapter.logits(canvas, mask)
    passed = calls[-1]["attention_mask"]
    assert passed.shape == (1, 1, canvas.shape[1], canvas.shape[1]) and passed.dtype == torch.bool
    assert calls[-1]["position_ids"][0, 2:].tolist() == list(range(canvas.shape[1] - 2))


def test_dream_chat_template(dream):
    standin, adapter = dream
    prompt = adapter.prepare_prompt("Hi")
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert standin.eot_id in adapter.encode(prompt)


# ------------------------------------------------------------------------------------------------
# ZeroGPU wiring (detected by ui/hosting.py, applied by the hub adapters)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_hosting(monkeypatch):
    """Each test installs its own ``Hosting``; the module's default comes back afterwards."""
    monkeypatch.setattr(hub, "_hosting", hub.Hosting())


def fake_spaces_module(calls: list) -> types.ModuleType:
    module = types.ModuleType("spaces")

    def GPU(duration=60):  # noqa: N802 - mirrors spaces.GPU
        def decorate(fn):
            def run_on_gpu(*args, **kwargs):
                calls.append(duration)
                return fn(*args, **kwargs)

            run_on_gpu.wrapped = fn
            return run_on_gpu

        return decorate

    module.GPU = GPU
    return module


def test_gpu_task_is_a_no_op_without_spaces(monkeypatch, mlm_folders, fresh_hosting):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def forward():
        return 1

    assert hosting.gpu_task(forward) is forward
    assert hosting.install() == hub.Hosting() == hub.current_hosting()
    adapter = registry.load_model(f"mlm:{mlm_folders['bert']}", device="cpu")
    assert adapter._forward == adapter._forward_on_device


def test_gpu_task_needs_the_spaces_package_even_on_spaces(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/diffusion-canvas")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError, like a missing package

    def forward():
        return 1

    assert hosting.gpu_task(forward) is forward
    assert hosting.detect() == hub.Hosting()


def test_forward_runs_inside_spaces_gpu_on_spaces(monkeypatch, mlm_folders, fresh_hosting):
    calls: list = []
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces_module(calls))
    monkeypatch.setenv("SPACE_ID", "someone/diffusion-canvas")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert hosting.on_zero_gpu()
    assert hub.resolve_device(None).type in ("cpu", "cuda")  # before install: whatever this machine has
    installed = hosting.install()
    assert installed.gpu_in_calls_only and hub.current_hosting() is installed
    assert hub.resolve_device(None).type == "cuda"  # ZeroGPU attaches CUDA inside GPU calls
    assert hub.available_memory(torch.device("cuda")) == hosting.ZERO_GPU_MEMORY_BYTES
    adapter = registry.load_model(f"mlm:{mlm_folders['bert']}", device="cpu")
    assert adapter._forward.wrapped == adapter._forward_on_device
    assert adapter.device == torch.device("cpu")  # the sampler stays on the CPU under ZeroGPU
    canvas = torch.tensor([adapter.encode("the fox") + [adapter.mask_id]])
    adapter.logits(canvas)
    assert calls == [hosting.ZERO_GPU_DURATION_S]

    # Results must leave the GPU call on the CPU (ZeroGPU detaches the GPU when the call returns).
    moved = []

    class GpuLogits:
        def float(self):
            return self

        def cpu(self):
            moved.append(True)
            return torch.zeros(1)

    monkeypatch.setattr(adapter, "_run_model", lambda input_ids, attention_mask: GpuLogits())
    adapter.logits(canvas)
    assert moved == [True]


# ------------------------------------------------------------------------------------------------
# End to end with the sampler
# ------------------------------------------------------------------------------------------------


def _run_sampler(adapter, prompt: str, gen_length: int = 8):
    """The final state of the real sampler on ``adapter``; checks the canvas invariants."""
    from dlm_core.sampler import SamplerConfig, run_to_end

    final = run_to_end(adapter, prompt, SamplerConfig(gen_length=gen_length, steps=4, block_length=4, seed=0))
    prompt_ids = adapter.encode(adapter.prepare_prompt(prompt))
    assert final.done and adapter.mask_id not in final.tokens.tolist()  # no masks left
    assert final.tokens[: final.prompt_length].tolist() == prompt_ids  # prompt unchanged
    assert final.length == len(prompt_ids) + gen_length
    return final


@pytest.mark.slow  # three stand-in folders through from_pretrained, then the sampler on each
@pytest.mark.parametrize("family", sorted(MLM_BUILDERS))
def test_sampler_end_to_end_on_masked_lms(mlm_folders, family):
    adapter = registry.load_model(f"mlm:{mlm_folders[family]}", device="cpu")
    _run_sampler(adapter, "the quick brown fox")


def test_sampler_end_to_end_on_chat_masked_lm(tmp_path):
    folder = build_modernbert(tmp_path / "chat")
    spec = dataclasses.replace(registry.REGISTRY["modernbert-chat"], repo_id=str(folder), mask_id=None)
    final = _run_sampler(hub.load_hub_model(spec, device="cpu", available_bytes=10**12), "hello world")
    assert final.prompt_length > 4  # the chat template wrapped the prompt


def test_sampler_end_to_end_on_llada_standin(tmp_path, remote_code_sandbox):
    standin = build_llada_standin(tmp_path / "llada")
    spec = standin_spec("llada-8b-instruct", standin, remote_code_sandbox(standin.folder))
    _run_sampler(hub.load_hub_model(spec, device="cpu"), "Hi there")


def test_sampler_end_to_end_on_dream_standin(dream):
    _, adapter = dream
    _run_sampler(adapter, "Hi there")


@pytest.mark.slow  # builds and loads a chat stand-in, records a run and its edit
def test_hand_edit_reuses_token_ids_and_applies_the_chat_template_once(tmp_path):
    """A hand edit of an instruct model's run: the kept ids stay where they were and the chat template
    is not applied to the already-templated canvas again (as re-encoding the edit's text would)."""
    from dlm_core.sampler import SamplerConfig, canvas_prompt
    from dlm_core.trajectory import record
    from dlm_core.viz import RunView, edit_canvas, edit_prompt

    folder = build_modernbert(tmp_path / "chat")
    spec = dataclasses.replace(registry.REGISTRY["modernbert-chat"], repo_id=str(folder), mask_id=None)
    adapter = hub.load_hub_model(spec, device="cpu", available_bytes=10**12)
    first = record(adapter, "hello world", SamplerConfig(gen_length=8, steps=8))
    view = RunView.from_trajectory(first)
    end = int(first.final.answer_end)
    picked = [first.final.prompt_length, first.final.prompt_length + 1]
    ids, slots = edit_canvas(view, picked)
    assert ids == first.final.tokens[:end].tolist() and set(picked) <= set(slots)
    text, count = edit_prompt(view, picked)
    edited = record(adapter, canvas_prompt(adapter, ids, slots, text=text), SamplerConfig(gen_length=0, steps=count))
    assert edited.final.length == end and edited.prompt == text
    kept = [i for i in range(end) if i not in slots]
    assert edited.final.tokens[kept].tolist() == first.final.tokens[kept].tolist()
    assert edited.final_text.count("[Question]") == 1
    # The text route wraps the templated canvas in the template again: what the ids route avoids.
    assert record(adapter, text, SamplerConfig(gen_length=0, steps=count)).final_text.count("[Question]") == 2
