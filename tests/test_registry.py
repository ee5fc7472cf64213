"""The model registry: names, conventions, the LRU cache, and the failure modes (offline, memory, policy)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time

import pytest
import torch
from hub_fixtures import build_bert

from dlm_core.models import builtin, hub, registry
from dlm_core.models.registry import (
    ModelNotFoundError,
    ModelRefusedError,
    ModelTooLargeError,
    ModelUnavailableError,
    get_spec,
    list_models,
    load_model,
)

pytestmark = pytest.mark.usefixtures("fresh_registry")  # tests/conftest.py

GB = 1024**3


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, plenty of memory, and no proxy, so only the fetch logic is tested."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "available_memory", lambda device: 1000 * GB)
    for name in ("HTTPS_PROXY", "https_proxy", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "hub"


# ------------------------------------------------------------------------------------------------
# Entries and conventions
# ------------------------------------------------------------------------------------------------


def test_registry_lists_every_required_entry_default_first():
    keys = [spec.key for spec in list_models()]
    assert keys[0] == registry.DEFAULT_MODEL == "canvas-diffusion"
    for key in ("canvas-ar", "tiny-random", "llada-8b-instruct", "llada-1.5", "dream-7b-instruct", "modernbert-chat"):
        assert key in keys
    for spec in list_models():
        assert (
            spec.display_name
            and spec.description
            and spec.family in ("canvas", "llada", "dream", "mlm", "ar-diffusion", "diffusion-gemma", "llada2")
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.key = "changed"


def test_llada_and_dream_conventions_match_their_model_cards():
    for key in ("llada-8b-instruct", "llada-1.5"):
        spec = get_spec(key)
        assert (spec.family, spec.mask_id, spec.shift, spec.chat_template) == ("llada", 126336, False, True)
        assert set(spec.eos_ids) == {126081, 126348}  # <|endoftext|>, <|eot_id|>
        assert spec.trust_remote_code and spec.params_b == pytest.approx(8.0, abs=0.1)
    dream = get_spec("dream-7b-instruct")
    assert (dream.family, dream.mask_id, dream.shift, dream.chat_template) == ("dream", 151666, True, True)
    assert set(dream.eos_ids) == {151643, 151645}  # <|endoftext|>, <|im_end|>
    chat = get_spec("modernbert-chat")
    assert (chat.family, chat.trust_remote_code, chat.shift, chat.wrap_special_tokens) == ("mlm", False, False, False)
    assert chat.repo_id == "dllm-hub/ModernBERT-large-chat-v0.1"


def test_remote_code_only_for_allow_listed_entries_pinned_to_a_commit():
    remote = {spec.repo_id: spec.revision for spec in list_models() if spec.trust_remote_code}
    pending = {repo: remote.pop(repo) for repo in list(remote) if repo in hub.REMOTE_CODE_PIN_PENDING}
    assert remote == hub.TRUSTED_REMOTE_CODE
    for repo in pending:  # listed, but refused until its commit is verified and pinned
        with pytest.raises(hub.ModelRefusedError, match="commit hash has not been verified"):
            hub.remote_code_trusted(get_spec(repo))
    for revision in remote.values():
        assert re.fullmatch(r"[0-9a-f]{40}", revision)
    assert all(not spec.trust_remote_code for spec in list_models() if spec.family in ("canvas", "mlm"))


def test_names_resolve_by_key_repo_id_and_mlm_prefix():
    assert get_spec("LLADA-8B-INSTRUCT") is registry.REGISTRY["llada-8b-instruct"]
    assert get_spec("GSAI-ML/LLaDA-8B-Instruct") is registry.REGISTRY["llada-8b-instruct"]
    assert get_spec("mlm:dllm-hub/ModernBERT-large-chat-v0.1") is registry.REGISTRY["modernbert-chat"]
    typed = get_spec("mlm:FacebookAI/roberta-base")
    assert (typed.key, typed.repo_id, typed.family) == ("mlm:FacebookAI/roberta-base", "FacebookAI/roberta-base", "mlm")
    assert not typed.trust_remote_code and typed.wrap_special_tokens and not typed.chat_template
    assert typed.revision == "main"


@pytest.mark.parametrize("name", ["gpt-5", "mlm:", "FacebookAI/roberta-base", ""])
def test_unknown_names_raise_model_not_found_listing_valid_names(name):
    with pytest.raises(ModelNotFoundError) as error:
        load_model(name)
    assert isinstance(error.value, ValueError)
    for key in ("canvas-diffusion", "llada-8b-instruct", "dream-7b-instruct", "mlm:<repo id or local path>"):
        assert key in str(error.value)


def test_no_ar_to_diffusion_entry_needs_remote_code():
    # dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1 needs remote code (model_type a2d-qwen3), so it is not listed.
    assert not [spec for spec in list_models() if spec.family == "ar-diffusion"]
    assert "a2d-qwen3" in registry.__doc__


# ------------------------------------------------------------------------------------------------
# Built-in models and the cache
# ------------------------------------------------------------------------------------------------


def test_tiny_random_loads_and_is_cached():
    first = load_model("tiny-random")
    assert first.kind == "diffusion" and first.logits(torch.tensor([[1, 2, 3]])).shape[:2] == (1, 3)
    assert load_model("tiny-random") is first
    assert registry.cached_models() == ["tiny-random"]


def test_builtin_model_not_trained_yet_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "ASSETS_DIR", tmp_path)
    with pytest.raises(ModelUnavailableError, match="python -m dlm_core.train"):
        load_model("canvas-diffusion")


def test_builtin_model_loads_from_assets(tmp_path, monkeypatch):
    from dlm_core.models.canvas_lm import CanvasConfig, CanvasLM

    folder = tmp_path / "canvas-diffusion"
    bert = build_bert(tmp_path / "tokenizer-donor")  # any tokenizer with [MASK] will do for loading
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert)
    config = CanvasConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        mask_token_id=tokenizer.mask_token_id,
    )
    CanvasLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    monkeypatch.setattr(registry, "ASSETS_DIR", tmp_path)
    adapter = load_model("canvas-diffusion")
    assert isinstance(adapter, builtin.CanvasAdapter) and adapter.mask_id == tokenizer.mask_token_id


def test_cache_is_lru_bounded(monkeypatch):
    loads = []

    def fake_load(spec, device, dtype, progress):
        loads.append(spec.key)
        return object()

    monkeypatch.setattr(registry, "_load_uncached", fake_load)
    monkeypatch.setattr(registry, "CACHE_SIZE", 2)
    a = load_model("tiny-random")
    load_model("canvas-ar")
    assert load_model("tiny-random") is a  # hit; canvas-ar is now least recent
    load_model("canvas-diffusion")
    assert registry.cached_models() == ["tiny-random", "canvas-diffusion"]
    load_model("canvas-ar")
    assert loads == ["tiny-random", "canvas-ar", "canvas-diffusion", "canvas-ar"]
    # Different device/dtype is a different cache entry.
    load_model("tiny-random", dtype=torch.bfloat16)
    assert loads[-1] == "tiny-random"


def test_concurrent_requests_load_once(monkeypatch):
    loads = []
    started = threading.Event()

    def slow_load(spec, device, dtype, progress):
        loads.append(spec.key)
        started.set()
        time.sleep(0.2)
        return object()

    monkeypatch.setattr(registry, "_load_uncached", slow_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_model("tiny-random"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert loads == ["tiny-random"]
    assert len(results) == 4 and all(result is results[0] for result in results)


# ------------------------------------------------------------------------------------------------
# Device and dtype
# ------------------------------------------------------------------------------------------------


def test_device_and_dtype_defaults(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hub.resolve_device(None) == torch.device("cpu")
    assert hub.resolve_dtype(None, torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hub.resolve_device(None) == torch.device("cuda")
    assert hub.resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert hub.resolve_dtype("float16", torch.device("cuda")) == torch.float16


# ------------------------------------------------------------------------------------------------
# Offline, not downloaded, cached
# ------------------------------------------------------------------------------------------------


def _assert_helpful_unavailable(message: str):
    assert "LLaDA 8B Instruct" in message and "GSAI-ML/LLaDA-8B-Instruct" in message
    assert "16.0 GB" in message
    assert (
        f"hf download GSAI-ML/LLaDA-8B-Instruct --revision {hub.TRUSTED_REMOTE_CODE['GSAI-ML/LLaDA-8B-Instruct']}"
        in message
    )


def test_offline_mode_fails_fast_with_download_instructions(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as error:
        load_model("llada-8b-instruct", device="cpu")
    assert time.monotonic() - start < 3
    _assert_helpful_unavailable(str(error.value))
    assert "offline mode" in str(error.value)


def test_unreachable_hub_fails_fast_with_download_instructions(empty_hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as error:
        load_model("llada-8b-instruct", device="cpu")
    assert time.monotonic() - start < 5
    _assert_helpful_unavailable(str(error.value))
    assert "cannot be reached" in str(error.value)


def _no_proxy_online(monkeypatch):
    from huggingface_hub import constants

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return constants


def test_unreachable_probe_respects_its_timeout(monkeypatch):
    constants = _no_proxy_online(monkeypatch)
    monkeypatch.setattr(constants, "ENDPOINT", "https://10.255.255.1")  # unroutable (or intercepted): not the Hub
    start = time.monotonic()
    reason = hub.hub_unreachable_reason("GSAI-ML/LLaDA-8B-Instruct", "main", timeout=0.5)
    assert reason is not None and "cannot be reached" in reason
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(("status", "reachable"), [(200, True), (404, False), (503, False)])
def test_probe_wants_a_successful_api_answer(monkeypatch, status, reachable):
    import http.server

    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        constants = _no_proxy_online(monkeypatch)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        reason = hub.hub_unreachable_reason("org/model", "abc123")
    finally:
        server.shutdown()
        server.server_close()
    assert paths == ["/api/models/org/model/revision/abc123"]
    assert (reason is None) == reachable
    if not reachable:
        assert f"HTTP {status}" in reason


def test_typed_hub_id_loads_from_the_local_cache_offline(empty_hub_cache, tmp_path, monkeypatch):
    """A model already in the HF cache loads with the Hub offline: the cache is checked first."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_folder = empty_hub_cache / "models--someone--tiny-bert"
    build_bert(repo_folder / "snapshots" / commit)
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = load_model("mlm:someone/tiny-bert", device="cpu")
    assert isinstance(adapter, hub.MaskedLMAdapter) and adapter.name == "someone/tiny-bert"


def test_download_progress_is_forwarded():
    events = []
    bar_class = hub._progress_tqdm(lambda fraction, message: events.append((fraction, message)), "Tiny")
    bar = bar_class(total=200, desc="Downloading bytes", disable=True)
    bar.update(50)
    bar.update(150)
    assert [fraction for fraction, _ in events] == [0.25, 1.0]
    assert events[-1][1] == "Downloading Tiny: Downloading bytes"


# ------------------------------------------------------------------------------------------------
# Memory refusal
# ------------------------------------------------------------------------------------------------


def test_too_large_model_is_refused_before_download_with_estimate(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(hub, "available_memory", lambda device: 16 * 10**9)
    monkeypatch.setattr(hub, "resolve_snapshot", lambda *a, **k: pytest.fail("must not fetch anything"))
    with pytest.raises(ModelTooLargeError) as error:
        load_model("llada-8b-instruct", device="cpu")
    message = str(error.value)
    assert isinstance(error.value, ModelRefusedError)
    # 8.02e9 params x 4 bytes (float32 on CPU) x 1.2 = 38.5 GB, versus 16.0 GB available.
    assert "38.5 GB" in message and "16.0 GB" in message and "8.02B parameters" in message


def test_memory_estimate_uses_dtype_and_injected_amount():
    needed = hub.check_memory("x", 1e9, torch.device("cpu"), torch.bfloat16, available_bytes=3 * 10**9)
    assert needed == int(1e9 * 2 * hub.MEMORY_OVERHEAD)
    with pytest.raises(ModelTooLargeError, match="4.8 GB"):
        hub.check_memory("x", 1e9, torch.device("cpu"), torch.float32, available_bytes=3 * 10**9)


def test_available_memory_reads_the_machine():
    assert hub.available_memory(torch.device("cpu")) > 10 * 1024**2


def test_incomplete_cached_snapshot_is_not_used(empty_hub_cache, monkeypatch):
    """A config-only or interrupted download in the cache must not be loaded as if complete."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo_folder = empty_hub_cache / "models--someone--half-bert"
    snapshot = build_bert(repo_folder / "snapshots" / commit)
    (snapshot / "model.safetensors").unlink()
    (repo_folder / "refs").mkdir()
    (repo_folder / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="hf download someone/half-bert --revision main"):
        load_model("mlm:someone/half-bert", device="cpu")


def test_sharded_checkpoint_needs_every_shard(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}'
    )
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert not hub.has_weights(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert hub.has_weights(tmp_path)


def test_download_path_reports_progress_and_falls_back_to_bin_weights(empty_hub_cache, tmp_path, monkeypatch):
    """The online path without a network: a fake snapshot_download that 'downloads' a tiny BERT."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    source = build_bert(tmp_path / "source")
    from transformers import BertForMaskedLM

    # An old repository: pytorch_model.bin only.
    torch.save(BertForMaskedLM.from_pretrained(source).state_dict(), source / "pytorch_model.bin")
    (source / "model.safetensors").unlink()
    calls = []

    def fake_snapshot_download(repo_id, *, revision=None, allow_patterns=None, local_files_only=False, tqdm_class=None):
        calls.append(allow_patterns)
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        target = tmp_path / f"snapshot{len(calls)}"
        target.mkdir()
        for file in source.iterdir():
            if any(file.match(pattern) for pattern in allow_patterns):
                (target / file.name).write_bytes(file.read_bytes())
        if tqdm_class is not None:
            bar = tqdm_class(total=100, desc="Downloading bytes", disable=True)
            bar.update(100)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda repo_id=None, revision=None: None)
    events = []
    adapter = load_model("mlm:someone/old-bert", device="cpu", progress=lambda f, m: events.append((f, m)))
    assert isinstance(adapter, hub.MaskedLMAdapter)
    assert calls[-2:] == [hub.MODEL_FILE_PATTERNS, hub.LEGACY_WEIGHT_PATTERNS]  # no safetensors: fetch .bin
    assert (1.0, "Downloading someone/old-bert: Downloading bytes") in events
    assert events[-1][1].startswith("Loading someone/old-bert onto cpu")


def test_custom_tokenizer_code_is_refused(tmp_path):
    import json

    folder = build_bert(tmp_path / "bert")
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelRefusedError, match="tokenizer_config.json has an auto_map"):
        load_model(f"mlm:{folder}", device="cpu")


def test_refused_model_does_not_evict_loaded_models(tmp_path, monkeypatch):
    from hub_fixtures import add_auto_map

    monkeypatch.setattr(registry, "CACHE_SIZE", 2)
    load_model("tiny-random")
    load_model(f"mlm:{build_bert(tmp_path / 'good')}", device="cpu")
    before = registry.cached_models()
    with pytest.raises(ModelRefusedError):
        load_model(f"mlm:{add_auto_map(build_bert(tmp_path / 'custom'))}", device="cpu")
    assert registry.cached_models() == before


def test_memory_held_by_evicted_models_counts_as_available(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "CACHE_SIZE", 1)
    first = load_model(f"mlm:{build_bert(tmp_path / 'a')}", device="cpu")
    held = registry._model_bytes(first)
    # Free memory alone (half a model) is too little; with the first model's memory it fits.
    monkeypatch.setattr(hub, "available_memory", lambda device: held // 2)
    second = build_bert(tmp_path / "b")
    assert registry._bytes_to_evict(torch.device("cpu")) == held
    load_model(f"mlm:{second}", device="cpu")
    assert registry.cached_models() == [f"mlm:{second}"]
    monkeypatch.setattr(registry, "_bytes_to_evict", lambda device: 0)
    with pytest.raises(ModelTooLargeError):
        load_model(f"mlm:{build_bert(tmp_path / 'c')}", device="cpu")


def test_serving_dtype_is_bf16_only_for_diffusion_passes_on_native_bf16_hardware(monkeypatch):
    monkeypatch.setattr(builtin, "native_bf16", lambda device="cpu": True)
    assert builtin.serving_dtype("diffusion") == torch.bfloat16
    assert builtin.serving_dtype("autoregressive") == torch.float32  # one-token steps: overhead-bound on CPU
    monkeypatch.setattr(builtin, "native_bf16", lambda device="cpu": False)
    assert builtin.serving_dtype("diffusion") == torch.float32  # emulated bf16 would be slower
    assert builtin.serving_dtype("autoregressive", "cuda") == torch.bfloat16


def test_builtin_models_load_in_the_dtype_asked():
    adapter = registry.load_model("tiny-random", dtype=torch.bfloat16)
    assert {p.dtype for p in adapter.model.parameters()} == {torch.bfloat16}
    assert registry.load_model("tiny-random") is not adapter  # float32 is cached apart
    assert {p.dtype for p in registry.load_model("tiny-random").model.parameters()} == {torch.float32}
