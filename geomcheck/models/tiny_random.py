"""Tiny random-init causal LMs of any installed model type, built from the config class alone.

The architecture matrix and the architecture tests need one small model per model type without
files or downloads. Sizes are overridden generically: every attribute in ``SIZES`` that the
config class knows is set, so one function covers configs that spell width ``hidden_size``,
``n_embd``, ``d_model`` or ``dim``.
"""

from __future__ import annotations

import torch
from torch import nn

SIZES: dict[str, object] = {
    # depth
    "num_hidden_layers": 3, "n_layer": 3, "n_layers": 3, "num_layers": 3, "num_decoder_layers": 3,
    # width and heads
    "hidden_size": 64, "n_embd": 64, "d_model": 64, "dim": 64, "embed_dim": 64, "word_embed_proj_dim": 64,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4, "decoder_attention_heads": 4,
    "num_key_value_heads": 2, "n_kv_heads": 2, "head_dim": 16, "kv_channels": 16, "rotary_dim": 8,
    "intermediate_size": 128, "n_inner": 128, "ffn_dim": 128, "d_ff": 128, "ffn_hidden_size": 128,
    "decoder_ffn_dim": 128,
    # vocabulary and context
    "vocab_size": 256, "max_position_embeddings": 128, "n_positions": 128, "n_ctx": 128, "seq_length": 128,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    # mixture of experts
    "num_local_experts": 4, "num_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "moe_topk": 2, "top_k": 2, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32, "n_shared_experts": 1, "first_k_dense_replace": 1,
    "n_group": 1, "topk_group": 1, "decoder_sparse_step": 1, "moe_k": 2, "moe_num_shared_experts": 1,
    # multi-head latent attention (DeepSeek and kin): its head sizes replace head_dim
    "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16, "kv_lora_rank": 16, "q_lora_rank": 32,
}


# Settings that must change together with the depth, beyond what SIZES can express.
PER_TYPE: dict[str, dict[str, object]] = {
    "gpt_neo": {"attention_types": [[["global", "local"], 1], [["global"], 1]]},
}


def tiny_config(model_type: str, **overrides: object):
    """The config class of ``model_type`` with every known size attribute shrunk, plus ``overrides``."""
    from transformers import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    known = config_class().to_dict()
    settings = {key: value for key, value in SIZES.items() if key in known}
    if "qk_rope_head_dim" in known:
        settings["head_dim"] = settings["qk_rope_head_dim"]  # latent attention rotates only the rope part
    settings.update(PER_TYPE.get(model_type, {}))
    settings.update(overrides)
    return config_class(**settings)


def tiny_model(model_type: str, seed: int = 0, **overrides: object) -> nn.Module:
    """A seeded random-init ``AutoModelForCausalLM`` of ``model_type`` in float32, in eval mode."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()
