"""Tiny, randomly initialised stand-ins for hub models, built locally in a temp folder (no downloads).

* ``build_bert`` / ``build_roberta`` / ``build_modernbert``: stock transformers masked LMs (2 layers,
  hidden 32) with tokenizers constructed here (WordPiece for BERT, byte-level BPE for the others),
  saved with ``save_pretrained`` so they load through the same code path as hub ids.
* ``build_llada_standin`` / ``build_dream_standin``: folders that reproduce the *conventions* of LLaDA
  and Dream (remote code via ``auto_map``, special tokens, chat template, mask / end-of-text /
  end-of-turn tokens) around a tiny bidirectional model, for the adapters and the allow-list path.
  ``record_calls`` in the stand-in model keeps the keyword arguments of each forward, so tests can
  check what the adapter passes (e.g. Dream's ``attention_mask="full"``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a diffusion model fills in masked tokens step by step",
    "what is the capital of france? paris is the capital of france.",
    "to be or not to be, that is the question",
    "hello world, this is a tiny test corpus for tokenizers",
    "models denoise text from all masks to a full answer",
]


def _train_byte_bpe(special_tokens: list[str], vocab_size: int = 400) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return tokenizer


# Every masked-LM stand-in has the same tiny transformer: it loads in milliseconds.
TINY_LAYERS = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _seed_init(seed: int = 0):
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# Stock masked LMs
# ------------------------------------------------------------------------------------------------


def _save_seeded(folder: Path, model_class, config, tokenizer) -> Path:
    """Build ``model_class(config)`` from seeded weights and save it with ``tokenizer`` in ``folder``."""
    _seed_init()
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_bert(folder: Path) -> Path:
    """BertForMaskedLM + a WordPiece BertTokenizer ([CLS]=2, [SEP]=3, [MASK]=4)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(
        {w for line in CORPUS for w in line.replace(",", " ,").replace(".", " .").replace("?", " ?").split()}
    )
    letters = sorted({c for line in CORPUS for c in line if c.isalpha()})
    vocab_list = specials + words + letters + ["##" + c for c in letters] + [",", ".", "?", "!"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        **TINY_LAYERS,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return _save_seeded(folder, BertForMaskedLM, config, tokenizer)


def build_roberta(folder: Path) -> Path:
    """RobertaForMaskedLM + a byte-level BPE RobertaTokenizer (<s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4)."""
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    trained = _train_byte_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    model_json = json.loads(trained.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tokenizer = RobertaTokenizer(vocab=model_json["vocab"], merges=merges)
    config = RobertaConfig(
        vocab_size=len(model_json["vocab"]),
        **TINY_LAYERS,
        max_position_embeddings=130,  # 128 usable positions after RoBERTa's padding_idx + 1 offset
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return _save_seeded(folder, RobertaForMaskedLM, config, tokenizer)


def build_modernbert(folder: Path, chat_template: str | None = None) -> Path:
    """ModernBertForMaskedLM + a byte-level BPE tokenizer with ModernBERT's special tokens."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    trained = _train_byte_bpe(specials)
    cls_id, sep_id = trained.token_to_id("[CLS]"), trained.token_to_id("[SEP]")
    trained.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        chat_template=chat_template,
    )
    config = ModernBertConfig(
        vocab_size=trained.get_vocab_size(),
        **TINY_LAYERS,
        max_position_embeddings=128,
        local_attention=16,
        pad_token_id=trained.token_to_id("[PAD]"),
        cls_token_id=cls_id,
        sep_token_id=sep_id,
        bos_token_id=cls_id,
        eos_token_id=sep_id,
    )
    return _save_seeded(folder, ModernBertForMaskedLM, config, tokenizer)


# ------------------------------------------------------------------------------------------------
# Remote-code stand-ins for LLaDA and Dream
# ------------------------------------------------------------------------------------------------

STANDIN_MODELING = '''\
"""A tiny bidirectional masked LM used as a stand-in for remote-code diffusion LLMs in tests."""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class StandInConfig(PretrainedConfig):
    model_type = "dlm-standin"

    def __init__(self, vocab_size=64, hidden_size=32, num_heads=2, max_position_embeddings=256, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class StandInModel(PreTrainedModel):
    config_class = StandInConfig
    base_model_prefix = "standin"
    record_calls = []

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.attention = nn.MultiheadAttention(config.hidden_size, config.num_heads, batch_first=True)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.5)

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        type(self).record_calls.append({"attention_mask": attention_mask, "position_ids": position_ids})
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        x = self.embed(input_ids) + self.positions(position_ids)
        key_padding_mask = None
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:  # LLaDA style
            key_padding_mask = attention_mask == 0
        elif isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:  # Dream style
            key_padding_mask = ~attention_mask[:, 0].any(dim=1)
        attended, _ = self.attention(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        return MaskedLMOutput(logits=self.head(x + attended))
'''


@dataclass(frozen=True)
class StandIn:
    """A stand-in model folder and the ids of its conventions."""

    folder: Path
    mask_id: int
    eos_id: int
    eot_id: int
    bos_id: int | None


def _write_standin(folder: Path, tokenizer_object: Tokenizer, special: dict, chat_template: str,
                   auto_map: dict | None = None) -> None:
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    module_path = folder / "modeling_standin.py"
    module_path.write_text(STANDIN_MODELING)
    spec = importlib.util.spec_from_file_location(f"standin_{folder.name}", module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    config = module.StandInConfig(vocab_size=tokenizer_object.get_vocab_size())
    _seed_init()
    module.StandInModel(config).save_pretrained(folder)
    config_path = folder / "config.json"
    config_json = json.loads(config_path.read_text())
    config_json["auto_map"] = {
        "AutoConfig": "modeling_standin.StandInConfig",
        "AutoModel": "modeling_standin.StandInModel",
        **(auto_map or {}),
    }
    config_path.write_text(json.dumps(config_json, indent=2))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, chat_template=chat_template, **special)
    tokenizer.save_pretrained(folder)


def _standin(folder: Path, specials: list[str], special: dict, chat_template: str, mask: str, eot: str,
             auto_map: dict | None = None) -> StandIn:
    """Train the byte-level BPE with ``specials``, write the stand-in folder, and name the ids of its mask,
    end-of-text (``special["eos_token"]``), end-of-turn and beginning-of-text (if any) tokens."""
    trained = _train_byte_bpe(specials)
    _write_standin(folder, trained, special, chat_template, auto_map)
    bos = special.get("bos_token")
    return StandIn(
        folder=folder,
        mask_id=trained.token_to_id(mask),
        eos_id=trained.token_to_id(special["eos_token"]),
        eot_id=trained.token_to_id(eot),
        bos_id=None if bos is None else trained.token_to_id(bos),
    )


# A Llama-3-style template like LLaDA's (written for this test): BOS, header tokens, <|eot_id|>.
LLADA_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# A ChatML template like Dream's (Qwen2.5 style, default system turn).
DREAM_LIKE_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_llada_standin(folder: Path) -> StandIn:
    specials = [
        "<|startoftext|>",
        "<|endoftext|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|mdm_mask|>",
    ]
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}
    return _standin(folder, specials, special, LLADA_LIKE_TEMPLATE, mask="<|mdm_mask|>", eot="<|eot_id|>")


def build_dream_standin(folder: Path) -> StandIn:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    return _standin(folder, specials, special, DREAM_LIKE_TEMPLATE, mask="<|mask|>", eot="<|im_end|>")


def add_auto_map(folder: Path) -> Path:
    """Give a stock model folder an ``auto_map``, as a repository shipping its own code would have."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "modeling_custom.CustomForMaskedLM"}
    config_path.write_text(json.dumps(config, indent=2))
    (folder / "modeling_custom.py").write_text("raise RuntimeError('remote code must never run in this test')\n")
    return folder


# ------------------------------------------------------------------------------------------------
# DiffusionGemma: stock transformers classes, tiny and random
# ------------------------------------------------------------------------------------------------

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_diffusion_gemma(folder: Path, canvas_length: int = 8, seed: int = 0, generation: dict | None = None) -> Path:
    """A tiny random ``DiffusionGemmaForBlockDiffusion`` from the stock config classes (2 text layers
    of width 32 with 2 experts, a 1-layer vision tower of width 16), a byte-level BPE tokenizer with
    Gemma's special tokens (<pad> 0, <eos> 1, <bos> 2) and a Gemma-style chat template, and a
    generation config with the model card's sampler settings (``generation`` overrides them)."""
    from transformers import (
        DiffusionGemmaConfig,
        DiffusionGemmaForBlockDiffusion,
        DiffusionGemmaTextConfig,
        PreTrainedTokenizerFast,
    )
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        DiffusionGemmaGenerationConfig,
        EntropyBoundSamplerConfig,
    )

    specials = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<image>", "<boi>", "<eoi>"]
    trained = _train_byte_bpe(specials, vocab_size=320)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        chat_template=GEMMA_CHAT_TEMPLATE,
    )
    vocab = trained.get_vocab_size()
    text = DiffusionGemmaTextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, global_head_dim=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
        num_experts=2, top_k_experts=1, moe_intermediate_size=32, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    vision = {
        "model_type": "gemma4_vision", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8, "position_embedding_size": 64,
    }
    config = DiffusionGemmaConfig(
        text_config=text.to_dict(), vision_config=vision, canvas_length=canvas_length,
        image_token_id=trained.token_to_id("<image>"), boi_token_id=trained.token_to_id("<boi>"),
        eoi_token_id=trained.token_to_id("<eoi>"),
    )
    _seed_init(seed)
    model = DiffusionGemmaForBlockDiffusion(config)
    settings = {
        "max_denoising_steps": 6, "t_min": 0.4, "t_max": 0.8, "stability_threshold": 1,
        "confidence_threshold": 0.005, "sampler_config": EntropyBoundSamplerConfig(entropy_bound=0.1),
        "eos_token_id": 1, "pad_token_id": 0, **(generation or {}),
    }
    model.generation_config = DiffusionGemmaGenerationConfig(**settings)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# A LLaDA 2.x-like chat template (written for this test) and special tokens, with the mask token on the
# tokenizer (``LLaDA2Pipeline`` reads ``tokenizer.mask_token_id``).
LLADA2_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<role>{{ message['role'] | upper }}</role>"
    "{{ message['content'] | trim }}{% endfor %}{% if add_generation_prompt %}<role>ASSISTANT</role>{% endif %}"
)


def build_llada2_standin(folder: Path) -> StandIn:
    """LLaDA 2.x's conventions around the tiny remote-code stand-in: a mask token the tokenizer names,
    an end-of-text token, a role-tag chat template and an ``auto_map`` (remote code) that names the
    model for ``AutoModelForCausalLM`` too, as LLaDA 2.x's repository does (the hub loader uses it)."""
    specials = ["<|startoftext|>", "<|endoftext|>", "<role>", "</role>", "<|mask|>"]
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "mask_token": "<|mask|>"}
    return _standin(folder, specials, special, LLADA2_LIKE_TEMPLATE, mask="<|mask|>", eot="<|endoftext|>",
                    auto_map={"AutoModelForCausalLM": "modeling_standin.StandInModel"})
