"""The LLaMA layout (RMSNorm, rotary positions), shared by Llama, Mistral, Qwen2/3 and SmolLM2."""

from geomcheck.models.adapters.table import ArchitectureTable

LLAMA = ArchitectureTable(
    family="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3"),
    blocks="layers",
    embed="embed_tokens",
    final_norm="norm",
    norm_attn="input_layernorm",
    attn="self_attn",
    norm_mlp="post_attention_layernorm",
    mlp="mlp",
    position_scheme="rotary",
    prepend_bos=True,
)
