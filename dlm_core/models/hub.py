"""Diffusion LLMs from the Hugging Face Hub behind the ``ModelAdapter`` interface, and how they are fetched.

Three adapter families, each documenting the conventions of the models it serves:

* ``LLaDAAdapter``: LLaDA 8B Instruct and LLaDA 1.5 (GSAI-ML). Loaded with ``AutoModel`` and the
  repository's own modeling code (``trust_remote_code``, allow-listed and pinned). The model card and
  ``generate.py`` of ML-GSAI/LLaDA feed the whole canvas and read ``model(x).logits`` with *no* shift:
  row i is already the distribution for token i. Mask id 126336 (``<|mdm_mask|>``), end of text 126081,
  end of turn 126348 (``<|eot_id|>``); instruct prompts go through the tokenizer's chat template.
* ``DreamAdapter``: Dream v0 Instruct 7B (Dream-org). Remote code as well. Dream was initialised from
  an autoregressive model and kept its alignment, so the logits at position i-1 predict token i. Its
  ``generation_utils.py`` shifts with ``torch.cat([logits[:, :1], logits[:, :-1]], dim=1)`` (row 0
  duplicates the first row; position 0 is always prompt, so it is never decoded) and this adapter does
  the same. Mask id 151666 (``<|mask|>``); ``<|endoftext|>`` 151643 and ``<|im_end|>`` 151645 end an
  answer; ChatML chat template.
* ``MaskedLMAdapter``: any BERT / RoBERTa / ModernBERT masked LM through the native
  ``AutoModelForMaskedLM`` class (``trust_remote_code=False`` always), sampled as a (weak) diffusion
  model; also dllm-hub/ModernBERT-large-chat-v0.1, a ModernBERT fine-tuned with the masked-diffusion
  objective on chat data (dLLM "BERT-Chat"). No shift. See the class docstring for [CLS]/[SEP].

Loading is defensive because the app must never hang or crash on a model it cannot serve:

* remote code runs only for repositories in ``TRUSTED_REMOTE_CODE``, each pinned to a commit, and is
  read from the pinned local snapshot; any other repository loads with ``trust_remote_code=False`` and
  is refused up front (``ModelRefusedError``) if its ``config.json`` has an ``auto_map``;
* the local Hugging Face cache is checked first; when a model is missing and the Hub is offline or
  unreachable (one API request with a 3-second timeout, instead of huggingface_hub's ~25 s of
  retries) the load fails at once with ``ModelUnavailableError`` naming the model, its size and
  the ``hf download`` command;
* models that cannot fit in RAM/VRAM are refused before anything is downloaded (``ModelTooLargeError``);
* a host whose GPU exists only inside wrapped calls (Hugging Face ZeroGPU) is described by a
  ``Hosting`` that the UI layer installs (``use_hosting``); nothing here knows about Spaces.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .base import HFCodec, ModelAdapter
from .spec import ModelSpec

logger = logging.getLogger(__name__)

# A progress callback: ``progress(fraction_or_None, message)``. ``gradio.Progress`` instances fit.
ProgressFn = Callable[[float | None, str], Any]

# Remote code is executed only for these repositories, and only at the pinned commit. Keep in sync
# with the registry (a test checks it). Sources of the hashes: see the registry module docstring.
TRUSTED_REMOTE_CODE: dict[str, str] = {
    "GSAI-ML/LLaDA-8B-Instruct": "08b83a6feb34df1a6011b80c3c00c7563e963b07",
    "GSAI-ML/LLaDA-1.5": "43716255dd5ce01192bcfc073a2557e969a2f271",
    "Dream-org/Dream-v0-Instruct-7B": "05334cb9faaf763692dcf9d8737c642be2b2a6ae",
}

# Remote code that belongs on the allow-list but whose commit could not be looked up where this was
# written (no network): loading is refused with this note until the hash is added above.
REMOTE_CODE_PIN_PENDING: dict[str, str] = {
    "inclusionAI/LLaDA2.1-mini": (
        "its commit hash has not been verified yet (this checkout was prepared offline); look it up with "
        "`hf download inclusionAI/LLaDA2.1-mini --dry-run` or on the Hub, review its modeling code, and add "
        "it to TRUSTED_REMOTE_CODE in dlm_core/models/hub.py"
    ),
}

# Memory estimate: parameters x bytes per parameter x this factor (activations for a ~1k-token
# canvas, the logits tensor, allocator slack). Deliberately rough; it exists to refuse hopeless
# loads (an 8B model in fp32 on a 16 GB laptop) before a 16 GB download, not to pack memory tightly.
MEMORY_OVERHEAD = 1.2
BYTES_PER_DTYPE = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}

HUB_PROBE_TIMEOUT_S = 3.0
# Files a model needs; everything else in a repository (ONNX exports, TF/Flax weights, images) is skipped.
MODEL_FILE_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
LEGACY_WEIGHT_PATTERNS = ["pytorch_model*.bin", "*.json", "*.txt"]


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ModelUnavailableError(RuntimeError):
    """The model exists but cannot be loaded here now: not downloaded and the Hub is unreachable,
    a download failed, or a built-in model has not been trained yet. The message says what to do."""


class ModelRefusedError(ValueError):
    """The model will not be loaded by policy: it needs untrusted remote code, or it is not a masked LM."""


class ModelTooLargeError(ModelRefusedError):
    """The model does not fit in the available RAM/VRAM; the message shows the estimate."""


# --------------------------------------------------------------------------------------------------
# Hosting, device, dtype
# --------------------------------------------------------------------------------------------------


def _unchanged(fn: Callable) -> Callable:
    return fn


@dataclass(frozen=True)
class Hosting:
    """What the host machine dictates about running hub models; the default runs them plainly, here.

    A host whose GPU exists only while a wrapped call runs (Hugging Face ZeroGPU's ``spaces.GPU``)
    describes that here; the UI layer detects its host (``ui/hosting.py``) and installs the result
    with ``use_hosting`` before it loads a model.

    wrap_forward: wraps each hub model's forward function (on ZeroGPU: one GPU attach per step).
    gpu_in_calls_only: CUDA exists only inside wrapped calls, so the default device is CUDA, the
        sampler keeps its tensors on the CPU and each forward returns its logits on the CPU.
    gpu_memory_bytes: GPU memory to assume when it cannot be queried (outside a call); None = query.
    """

    wrap_forward: Callable[[Callable], Callable] = _unchanged
    gpu_in_calls_only: bool = False
    gpu_memory_bytes: int | None = None


_hosting = Hosting()


def use_hosting(hosting: Hosting) -> None:
    """Install the host's rules for every hub model loaded from now on (the UI does this at start)."""
    global _hosting
    _hosting = hosting


def current_hosting() -> Hosting:
    return _hosting


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or CUDA when available (always when the host grants a GPU per call), else CPU."""
    if device is not None:
        return torch.device(device)
    if _hosting.gpu_in_calls_only or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """The requested dtype, or bfloat16 on GPU (what LLaDA and Dream were trained and served in) and
    float32 on CPU (bf16 matmuls on CPU are slow and lose precision for no memory benefit we need)."""
    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return torch.bfloat16 if device.type == "cuda" else torch.float32


# --------------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------------


def _meminfo_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def available_memory(device: torch.device) -> int:
    """Bytes free for a new model on ``device``: VRAM via ``torch.cuda.mem_get_info``, RAM via /proc/meminfo.

    Tests replace this function (monkeypatch) to simulate small or large machines.
    """
    if device.type == "cuda":
        if _hosting.gpu_memory_bytes is not None:
            return _hosting.gpu_memory_bytes
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return _meminfo_available_bytes()


def estimate_load_bytes(num_params: float, dtype: torch.dtype) -> int:
    return int(num_params * BYTES_PER_DTYPE.get(dtype, 4) * MEMORY_OVERHEAD)


def check_memory(
    name: str,
    num_params: float,
    device: torch.device,
    dtype: torch.dtype,
    available_bytes: int | None = None,
    reclaimable_bytes: int = 0,
) -> int:
    """Raise ``ModelTooLargeError`` (with the estimate) unless ``num_params`` fit; return the estimate.

    ``reclaimable_bytes``: memory held by loaded models that will be released before this one loads.
    """
    needed = estimate_load_bytes(num_params, dtype)
    available = (available_memory(device) if available_bytes is None else available_bytes) + reclaimable_bytes
    if needed > available:
        where = "GPU memory" if device.type == "cuda" else "RAM"
        dtype_name = str(dtype).removeprefix("torch.")
        hint = " A GPU with bfloat16 halves it." if dtype == torch.float32 else ""
        raise ModelTooLargeError(
            f"{name} needs about {needed / 1e9:.1f} GB of {where} "
            f"({num_params / 1e9:.2f}B parameters x {BYTES_PER_DTYPE.get(dtype, 4)} bytes ({dtype_name}) "
            f"x {MEMORY_OVERHEAD} overhead), but only {available / 1e9:.1f} GB is available on this machine."
            f"{hint} Pick a smaller model, such as the built-in canvas-diffusion."
        )
    return needed


def _weights_num_params(folder: Path, config: dict) -> float:
    """Parameter count estimated from the weight files on disk and the dtype they are stored in."""
    stored = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    bytes_per_param = 2 if stored in ("bfloat16", "float16") else 4
    total = sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))
    return total / bytes_per_param


# --------------------------------------------------------------------------------------------------
# Fetching: local folders, the local Hugging Face cache, and (only when reachable) the Hub
# --------------------------------------------------------------------------------------------------


def is_local_path(repo_id: str) -> bool:
    return Path(repo_id).expanduser().is_dir()


def download_command(repo_id: str, revision: str | None) -> str:
    """The shell command that pre-downloads a repository (``hf`` is huggingface_hub's CLI since 1.0)."""
    command = f"hf download {repo_id}"
    return command + (f" --revision {revision}" if revision else "")


def _offline_env() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(flag.upper() in ("1", "ON", "YES", "TRUE") for flag in flags)


def hub_unreachable_reason(
    repo_id: str | None = None, revision: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S
) -> str | None:
    """Why the Hub cannot serve ``repo_id``@``revision`` right now, or None when it answers the API call.

    One HTTP request with ``timeout`` and no retries (huggingface_hub itself retries an unreachable
    endpoint with back-off for ~25 s). A plain TCP probe is not enough: behind a transparent proxy
    every connection opens, so the probe asks the Hub's API and wants a 2xx answer. Proxies from the
    environment are honoured (huggingface_hub's own HTTP session).
    """
    if _offline_env():
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    url = f"{constants.ENDPOINT}/api/models"
    if repo_id:
        url += f"/{repo_id}" + (f"/revision/{revision}" if revision else "")
    host = urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        response = get_session().get(url, headers=build_hf_headers(), timeout=timeout, follow_redirects=True)
    except Exception as error:  # DNS, refused, TLS, timeout: all mean "not reachable from here"
        return f"the Hugging Face Hub ({host}) cannot be reached ({type(error).__name__}: {error})"
    if response.status_code >= 400:
        return f"the Hugging Face Hub ({host}) answered HTTP {response.status_code} for {repo_id or 'its API'}"
    return None


def _unavailable_message(name: str, repo_id: str, revision: str | None, size_gb: float | None, reason: str) -> str:
    size = f"about {size_gb:.1f} GB" if size_gb else "of unknown size"
    return (
        f"{name} ({repo_id}) is not in the local Hugging Face cache and {reason}. "
        f"The download is {size}. Pre-download it on a machine with internet access:\n"
        f"    {download_command(repo_id, revision)}\n"
        f"then copy the cache folder (~/.cache/huggingface/hub, or $HF_HUB_CACHE) to this machine. "
        f"The built-in models keep working meanwhile."
    )


def _progress_tqdm(progress: ProgressFn, name: str):
    """A tqdm class that forwards huggingface_hub's download bars to ``progress(fraction, message)``."""
    from tqdm.auto import tqdm

    class ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            self._label = kwargs.get("desc") or "Downloading"
            self._done = float(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self._done += float(n or 0)
            total = getattr(self, "total", None)
            fraction = min(self._done / total, 1.0) if total else None
            progress(fraction, f"Downloading {name}: {self._label}")
            return super().update(n)

    return ProgressTqdm


def has_weights(folder: Path) -> bool:
    """True when ``folder`` holds a complete set of weights (every shard of a sharded checkpoint)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
            return bool(shards) and all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def resolve_snapshot(
    repo_id: str,
    revision: str | None,
    *,
    name: str,
    download_gb: float | None = None,
    progress: ProgressFn | None = None,
    need_weights: bool = True,
) -> Path:
    """A local folder holding the model's files: the path itself, the cached snapshot, or a fresh download.

    Order matters for failing fast: the cache is read with ``local_files_only=True`` (no network), and
    the network is touched only after ``hub_unreachable_reason`` says the Hub can be reached. A cached
    snapshot counts only if it is complete (``config.json``, plus every weight shard when
    ``need_weights``): an interrupted download, or an earlier config-only fetch, is resumed instead.
    With ``need_weights=False`` only ``config.json`` is fetched (policy checks before big downloads).
    """
    if is_local_path(repo_id):
        return Path(repo_id).expanduser()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    def complete(folder: Path) -> bool:
        return (folder / "config.json").is_file() and (not need_weights or has_weights(folder))

    patterns = MODEL_FILE_PATTERNS if need_weights else ["config.json"]
    try:
        cached = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True))
        if complete(cached):
            return cached
    except LocalEntryNotFoundError:
        pass
    reason = hub_unreachable_reason(repo_id, revision)
    if reason is not None:
        raise ModelUnavailableError(_unavailable_message(name, repo_id, revision, download_gb, reason))
    if progress is not None:
        progress(0.0, f"Downloading {name} ({download_gb or '?'} GB) from the Hugging Face Hub")
    tqdm_class = _progress_tqdm(progress, name) if progress is not None else None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, tqdm_class=tqdm_class))
        if need_weights and not has_weights(folder):
            # Older BERT/RoBERTa repositories ship only pytorch_model.bin; fetched only when needed.
            folder = Path(
                snapshot_download(
                    repo_id, revision=revision, allow_patterns=LEGACY_WEIGHT_PATTERNS, tqdm_class=tqdm_class
                )
            )
    except Exception as error:  # network errors, missing repo or revision, disk full: one clear message
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        if isinstance(error, RepositoryNotFoundError | RevisionNotFoundError):
            raise ModelUnavailableError(f"{repo_id}@{revision or 'main'} does not exist on the Hub: {error}") from error
        raise ModelUnavailableError(
            _unavailable_message(name, repo_id, revision, download_gb, f"downloading it failed ({error})")
        ) from error
    if not complete(folder):
        raise ModelUnavailableError(f"{name} ({repo_id}@{revision or 'main'}) has no complete transformers checkpoint")
    return folder


def read_config(repo_id: str, revision: str | None, *, name: str, download_gb: float | None = None) -> dict:
    """``config.json`` alone (a few kB), so policy checks run before any weights are fetched."""
    if is_local_path(repo_id):
        path = Path(repo_id).expanduser() / "config.json"
        if not path.is_file():
            raise ModelRefusedError(f"{repo_id} has no config.json, so it is not a transformers model folder")
        return json.loads(path.read_text())
    folder = resolve_snapshot(repo_id, revision, name=name, need_weights=False, download_gb=download_gb)
    return json.loads((folder / "config.json").read_text())


def refuse_remote_code(repo_id: str, config: dict, filename: str = "config.json") -> None:
    """Refuse repositories whose config asks for their own modeling code unless they are allow-listed.

    An ``auto_map`` means the authors' classes should be used; loading the native class instead could
    silently run a different model (e.g. causal attention where the repo patched in bidirectional).
    """
    auto_map = config.get("auto_map")
    if auto_map:
        classes = ", ".join(sorted(auto_map)) if isinstance(auto_map, dict) else str(auto_map)
        allowed = ", ".join(sorted(TRUSTED_REMOTE_CODE))
        raise ModelRefusedError(
            f"{repo_id} needs remote code: its {filename} has an auto_map ({classes}), so loading it would "
            f"execute Python files from the repository. Remote code is only trusted for these pinned "
            f"repositories: {allowed}. Other models must load with stock transformers classes."
        )


# --------------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------------


class WordPieceCodec(HFCodec):
    """``HFCodec`` for WordPiece vocabularies (BERT), where pieces carry no whitespace.

    ``decode`` already glues ``##`` continuations; ``token_text`` (one token on the canvas) gives a
    whole-word piece a leading space and strips ``##`` from a continuation, so a row of tokens reads
    as text. Special tokens show as themselves.
    """

    def token_text(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._token_text_cache:
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            if piece is None:
                text = ""
            elif token_id in self.tokenizer.all_special_ids:
                text = piece
            else:
                text = piece[2:] if piece.startswith("##") else " " + piece
            self._token_text_cache[token_id] = text
        return self._token_text_cache[token_id]


def make_codec(tokenizer) -> HFCodec:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    model_type = type(getattr(backend, "model", None)).__name__
    return WordPieceCodec(tokenizer) if model_type == "WordPiece" else HFCodec(tokenizer)


class HubAdapter(ModelAdapter):
    """Shared plumbing for hub models: device placement, chat template, the host-wrapped forward.

    Subclasses implement ``_run_model(input_ids, attention_mask) -> logits`` (batch x length x vocab,
    position-aligned) on tensors already on ``self.model_device``.

    ``device`` is where callers (the sampler) keep their tensors; ``model_device`` is where the weights
    are. They differ only on a host whose GPU exists only inside wrapped calls (``Hosting``, e.g.
    ZeroGPU): there the sampler runs on the CPU and each forward moves its inputs to the GPU and its
    logits back.
    """

    kind = "diffusion"

    def __init__(
        self,
        model,
        tokenizer,
        spec: ModelSpec,
        *,
        mask_id: int,
        eos_ids: tuple[int, ...],
        max_length: int,
        device: torch.device | None = None,
    ):
        self.model = model.eval()
        # Where the loader put the weights (on ZeroGPU the parameters may report CPU outside a GPU call).
        self.model_device = torch.device(device) if device is not None else next(model.parameters()).device
        self.hosting = _hosting  # the rules this adapter was loaded under
        self.device = torch.device("cpu") if self.hosting.gpu_in_calls_only else self.model_device
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = spec.display_name
        self.codec = make_codec(tokenizer)
        self.mask_id = int(mask_id)
        self.eos_ids = tuple(dict.fromkeys(int(i) for i in eos_ids))
        self.max_length = int(max_length)
        self.vocab_size = _logits_width(model)
        # E.g. on ZeroGPU the GPU exists only inside spaces.GPU calls; elsewhere the plain function.
        self._forward = self.hosting.wrap_forward(self._forward_on_device)

    def prepare_prompt(self, text: str) -> str:
        """Instruct models get the user's text as one user turn plus the assistant header (the model
        card's ``apply_chat_template(..., add_generation_prompt=True)``); base models get it verbatim."""
        if not self.spec.chat_template:
            return text
        # Some chat fine-tunes ship their template only in their training code; the registry then
        # carries it (``fallback_chat_template``). No template at all: the text goes in verbatim.
        template = getattr(self.tokenizer, "chat_template", None) or self.spec.fallback_chat_template
        if not template:
            return text
        messages = [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=True, tokenize=False
        )

    def _forward_on_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        input_ids = input_ids.to(self.model_device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.model_device)
        with torch.no_grad():
            logits = self._run_model(input_ids, attention_mask).float()
        # A per-call GPU (ZeroGPU) is given back when the call returns, so results must live on the CPU.
        return logits.cpu() if self.hosting.gpu_in_calls_only else logits

    def _run_model(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._forward(input_ids, attention_mask)


def _logits_width(model) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(getattr(head, "weight", None), torch.Tensor):
        return int(head.weight.shape[0])
    # LLaDA (OLMo-style) pads its output layer to ``embedding_size``; others use ``vocab_size``.
    return int(getattr(model.config, "embedding_size", None) or model.config.vocab_size)


def _context_length(config, registry_limit: int | None, *fields: str) -> int:
    """The registry's context limit, capped by the first of ``fields`` that the config defines."""
    config_limit = next((getattr(config, field) for field in fields if getattr(config, field, None)), None)
    known = [int(limit) for limit in (registry_limit, config_limit) if limit]
    if not known:
        raise ModelRefusedError("cannot tell the model's context length from its config or the registry")
    return min(known)


def _check_mask_token(tokenizer, mask_id: int, name: str) -> None:
    # The registry's mask id is authoritative for LLaDA/Dream (their tokenizers do not all declare a
    # mask_token); a wrong id would silently produce garbage, so at least say so loudly.
    piece = tokenizer.convert_ids_to_tokens(int(mask_id))
    if not piece or "mask" not in str(piece).lower():
        logger.warning("%s: token %s is %r, which does not look like a mask token", name, mask_id, piece)


def _registry_conventions(model, tokenizer, spec: ModelSpec, *context_fields: str) -> dict[str, Any]:
    """LLaDA / Dream: the mask id from the registry (checked against the tokenizer), the registry's
    end-of-text ids plus the tokenizer's, and the context length (``_context_length``)."""
    max_length = _context_length(model.config, spec.max_length, *context_fields)
    eos = tuple(spec.eos_ids) + ((tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else ())
    _check_mask_token(tokenizer, spec.mask_id, spec.display_name)
    return {"mask_id": spec.mask_id, "eos_ids": eos, "max_length": max_length}


class LLaDAAdapter(HubAdapter):
    """LLaDA 8B Instruct / LLaDA 1.5 (GSAI-ML/LLaDA-8B-Instruct, GSAI-ML/LLaDA-1.5 model cards).

    A bidirectional Transformer trained as a masked diffusion model: ``model(x).logits[:, i]`` is the
    prediction for token i itself (no shift). The mask id (126336) is not the tokenizer's
    ``mask_token``, so it comes from the registry; answers end at ``<|endoftext|>`` (126081) or, for
    the instruct model, ``<|eot_id|>`` (126348). Context: 4096 tokens.
    """

    def __init__(self, model, tokenizer, spec: ModelSpec, device: torch.device | None = None):
        conventions = _registry_conventions(model, tokenizer, spec, "max_sequence_length", "max_position_embeddings")
        super().__init__(model, tokenizer, spec, device=device, **conventions)

    def _run_model(self, input_ids, attention_mask):
        if attention_mask is None or bool(torch.all(attention_mask != 0)):
            return self.model(input_ids).logits  # exactly generate.py's call when nothing is padded
        return self.model(input_ids, attention_mask=attention_mask).logits


class DreamAdapter(HubAdapter):
    """Dream v0 Instruct 7B (Dream-org/Dream-v0-Instruct-7B model card, DreamLM/Dream generation_utils.py).

    Dream keeps the autoregressive alignment of the Qwen2.5 model it was initialised from: the raw
    logits at position i-1 are the prediction for token i. This adapter returns
    ``torch.cat([raw[:, :1], raw[:, :-1]], dim=1)`` exactly as Dream's sampler does, so row i is the
    distribution for token i (row 0 repeats raw row 0; position 0 is always prompt). Without padding
    Dream's sampler passes ``attention_mask="full"``; with a 0/1 padding mask it passes a 4-D boolean
    mask and position ids that skip the padding, and so does this adapter. Mask id 151666.
    """

    def __init__(self, model, tokenizer, spec: ModelSpec, device: torch.device | None = None):
        conventions = _registry_conventions(model, tokenizer, spec, "max_position_embeddings")
        super().__init__(model, tokenizer, spec, device=device, **conventions)

    def _run_model(self, input_ids, attention_mask):
        if attention_mask is None or bool(torch.all(attention_mask != 0)):
            raw = self.model(input_ids=input_ids, attention_mask="full", position_ids=None).logits
        else:
            keep = attention_mask.bool()
            position_ids = attention_mask.long().cumsum(-1) - 1
            position_ids = position_ids.masked_fill(~keep, 1)
            pairwise = keep[:, None, :, None] & keep[:, None, None, :]  # batch x 1 x queries x keys
            raw = self.model(input_ids=input_ids, attention_mask=pairwise, position_ids=position_ids).logits
        if self.spec.shift:
            return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)
        return raw


class MaskedLMAdapter(HubAdapter):
    """A BERT / RoBERTa / ModernBERT masked LM (``AutoModelForMaskedLM``, never remote code).

    Conventions: the mask id is the tokenizer's ``mask_token_id``; an answer ends at the separator or
    end-of-sequence token (``[SEP]``, ``</s>``), plus any ids the registry adds; no shift.

    [CLS]/[SEP] handling: prompts are encoded *without* special tokens, like every other model, so the
    canvas shows only real text. Pre-trained MLMs always saw ``[CLS] text [SEP]``, so when the registry
    entry sets ``wrap_special_tokens`` (every user-typed ``mlm:`` model) ``logits`` feeds
    ``[CLS] + canvas + [SEP]`` and drops those two rows again: row i is still token i of the canvas, and
    ``max_length`` is two shorter than the model's window. Chat fine-tunes trained on bare chat-template
    tokens (dLLM's ModernBERT-chat) set it to False and see the canvas as is.

    ``max_length`` is the position window: ``max_position_embeddings``, minus ``padding_idx + 1`` for
    RoBERTa-style embeddings whose positions start after the padding index, minus the wrapper tokens.
    """

    def __init__(self, model, tokenizer, spec: ModelSpec, device: torch.device | None = None):
        mask_id = tokenizer.mask_token_id
        if mask_id is None:
            raise ModelRefusedError(f"{spec.display_name}: the tokenizer has no mask token, so it is not a masked LM")
        if spec.mask_id is not None and spec.mask_id != mask_id:
            raise ModelRefusedError(
                f"{spec.display_name}: the registry says mask id {spec.mask_id} but the tokenizer says {mask_id}"
            )
        eos = tuple(i for i in (tokenizer.sep_token_id, tokenizer.eos_token_id) if i is not None)
        self._prefix: list[int] = []
        self._suffix: list[int] = []
        if spec.wrap_special_tokens:
            first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
            last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            self._prefix = [first] if first is not None else []
            self._suffix = [last] if last is not None else []
        window = model.config.max_position_embeddings - _position_offset(model)
        max_length = window - len(self._prefix) - len(self._suffix)
        if spec.max_length:
            max_length = min(max_length, spec.max_length)
        super().__init__(
            model,
            tokenizer,
            spec,
            mask_id=mask_id,
            eos_ids=eos + tuple(spec.eos_ids),
            max_length=max_length,
            device=device,
        )

    def _run_model(self, input_ids, attention_mask):
        batch, before, after = input_ids.shape[0], len(self._prefix), len(self._suffix)
        if before or after:
            prefix = input_ids.new_tensor(self._prefix, dtype=torch.long).expand(batch, before)
            suffix = input_ids.new_tensor(self._suffix, dtype=torch.long).expand(batch, after)
            input_ids = torch.cat((prefix, input_ids, suffix), dim=1)
            # The wrapper tokens are always attended. In a right-padded row [SEP] sits after the padding
            # (one position late for absolute-position models); the canvas rows are what matter.
            if attention_mask is not None:
                attention_mask = torch.cat(
                    (attention_mask.new_ones(batch, before), attention_mask, attention_mask.new_ones(batch, after)),
                    dim=1,
                )
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[:, before : logits.shape[1] - after]


def _position_offset(model) -> int:
    # RoBERTa-family embeddings number positions from padding_idx + 1, so the first
    # padding_idx + 1 rows of the position table are unusable.
    embeddings = getattr(model.base_model, "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    padding_idx = getattr(positions, "padding_idx", None)
    return int(padding_idx) + 1 if padding_idx is not None else 0


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

ADAPTERS: dict[str, type[HubAdapter]] = {"llada": LLaDAAdapter, "dream": DreamAdapter, "mlm": MaskedLMAdapter}


def remote_code_trusted(spec: ModelSpec) -> bool:
    """True only for a spec that asks for remote code *and* matches an allow-list entry exactly."""
    if not spec.trust_remote_code:
        return False
    if spec.repo_id in REMOTE_CODE_PIN_PENDING and spec.repo_id not in TRUSTED_REMOTE_CODE:
        raise ModelRefusedError(
            f"{spec.display_name}: {spec.repo_id} runs remote code, and {REMOTE_CODE_PIN_PENDING[spec.repo_id]}"
        )
    pinned = TRUSTED_REMOTE_CODE.get(spec.repo_id)
    if pinned is None or pinned != spec.revision:
        raise ModelRefusedError(
            f"{spec.display_name}: remote code for {spec.repo_id}@{spec.revision} is not in the allow-list "
            f"(trusted: {', '.join(f'{k}@{v[:8]}' for k, v in TRUSTED_REMOTE_CODE.items())})"
        )
    return True


def load_hub_model(
    spec: ModelSpec,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    progress: ProgressFn | None = None,
    *,
    available_bytes: int | None = None,
    reclaimable_bytes: int = 0,
    before_load: Callable[[], Any] | None = None,
) -> HubAdapter:
    """Fetch (cache first) and load a hub model for ``spec`` (family llada, dream or mlm).

    Order: allow-list check, memory check from the registry's parameter count, config policy checks
    (``auto_map``, masked-LM type) for untrusted repositories, snapshot (cache or download), memory
    check from the weight files when the count was unknown, then load and wrap. ``before_load`` runs
    just before the weights are read (the registry evicts cached models there, so a refused or
    unavailable model never costs the user the model they had); ``reclaimable_bytes`` is what that
    eviction frees, counted as available by the memory checks.
    """
    adapter_class = ADAPTERS.get(spec.family)
    if adapter_class is None and spec.family not in OWN_SAMPLER_FAMILIES:
        raise ModelRefusedError(f"{spec.display_name}: family {spec.family!r} has no hub loader")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    trusted = remote_code_trusted(spec)
    if spec.params_b:
        check_memory(spec.display_name, spec.params_b * 1e9, device, dtype, available_bytes, reclaimable_bytes)

    config = None
    if not trusted:
        config = read_config(spec.repo_id, spec.revision, name=spec.display_name, download_gb=spec.download_gb)
        refuse_remote_code(spec.repo_id, config)
        if spec.family == "mlm":
            _refuse_non_mlm(spec, config)

    folder = resolve_snapshot(
        spec.repo_id, spec.revision, name=spec.display_name, download_gb=spec.download_gb, progress=progress
    )
    if not trusted:
        tokenizer_config = folder / "tokenizer_config.json"
        if tokenizer_config.is_file():  # a custom tokenizer class is remote code too
            refuse_remote_code(spec.repo_id, json.loads(tokenizer_config.read_text()), "tokenizer_config.json")
    if not spec.params_b:
        num_params = _weights_num_params(folder, config or {})
        check_memory(spec.display_name, num_params, device, dtype, available_bytes, reclaimable_bytes)

    if before_load is not None:
        before_load()
    if progress is not None:
        progress(None, f"Loading {spec.display_name} onto {device.type} ({str(dtype).removeprefix('torch.')})")
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trusted)
    if spec.family in OWN_SAMPLER_FAMILIES:
        return _load_own_sampler_model(spec, folder, tokenizer, device, dtype, trusted)
    auto_class = AutoModelForMaskedLM if spec.family == "mlm" else AutoModel
    model = auto_class.from_pretrained(folder, trust_remote_code=trusted, dtype=dtype)
    return adapter_class(model.to(device), tokenizer, spec, device=device)


# Families whose models run their own sampler (``models.external``), recorded through ``models.bridge``.
OWN_SAMPLER_FAMILIES = ("diffusion-gemma", "llada2")


def _load_own_sampler_model(spec: ModelSpec, folder: Path, tokenizer, device, dtype, trusted: bool):
    """DiffusionGemma with the stock ``DiffusionGemmaForBlockDiffusion`` class (never remote code);
    LLaDA 2.x with its allow-listed remote code (``AutoModelForCausalLM``, as its model card loads it)."""
    from .external import DiffusionGemmaAdapter, LLaDA2Adapter

    if spec.family == "diffusion-gemma":
        from transformers import DiffusionGemmaForBlockDiffusion

        model = DiffusionGemmaForBlockDiffusion.from_pretrained(folder, dtype=dtype)
        adapter = DiffusionGemmaAdapter(model.to(device), tokenizer, spec, device=device,
                                        engine=spec.engine or "transformers")
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=trusted, dtype=dtype)
        adapter = LLaDA2Adapter(model.to(device), tokenizer, spec, device=device)
    adapter.wrap_run = _hosting.wrap_forward  # on ZeroGPU the whole recorded run is one GPU call
    return adapter


def _refuse_non_mlm(spec: ModelSpec, config: dict) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ModelRefusedError(
            f"{spec.repo_id} is not a masked language model (model_type {model_type!r}); "
            "only BERT/RoBERTa/ModernBERT-style masked LMs can be sampled as diffusion models"
        )
