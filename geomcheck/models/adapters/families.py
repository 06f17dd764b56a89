"""Built-in tables beyond GPT-2 and LLaMA, one per block scheme and module-naming family.

Each table was accepted only after residual verification passed on a tiny random model of every
model type it lists (tests/test_architectures.py, benchmarks/architecture_matrix.py).
"""

from __future__ import annotations

from dataclasses import replace

from geomcheck.models.adapters.gpt2 import GPT2
from geomcheck.models.adapters.llama import LLAMA
from geomcheck.models.adapters.table import ArchitectureTable

POST_NORM = "post-norm blocks (LayerNorm after the residual add) have no residual stream for attn_out and mlp_out to add to"

# --- sequential pre-norm, learned absolute positions -------------------------------------------------
GPT_NEO = replace(GPT2, family="gpt_neo", model_types=("gpt_neo",), prepend_bos=True)
GPT_BIGCODE = replace(GPT2, family="gpt_bigcode", model_types=("gpt_bigcode",), prepend_bos=True)

# OPT-style decoders: loose fc1/fc2 MLP, so the MLP's contribution is fc2's output.
OPT = ArchitectureTable(
    family="opt",
    model_types=("opt",),
    blocks="decoder.layers",
    embed="decoder.embed_tokens",
    pos_embed="decoder.embed_positions",
    pos_embed_offset=2,
    final_norm="decoder.final_layer_norm",
    norm_attn="self_attn_layer_norm",
    attn="self_attn",
    norm_mlp="final_layer_norm",
    mlp="fc2",
    position_scheme="learned",
    refuse_when=(("do_layer_norm_before", False, f"this OPT variant (e.g. opt-350m) uses {POST_NORM}"),),
)
BIOGPT = replace(
    OPT, family="biogpt", model_types=("biogpt",), blocks="layers", embed="embed_tokens", pos_embed="embed_positions", final_norm="layer_norm", refuse_when=()
)
XGLM = replace(BIOGPT, family="xglm", model_types=("xglm",), position_scheme="sinusoidal")

# --- parallel attention + MLP: both read the same block input -----------------------------------------
GPTJ = ArchitectureTable(
    family="gptj",
    model_types=("gptj", "codegen"),
    blocks="h",
    embed="wte",
    final_norm="ln_f",
    norm_attn="ln_1",
    attn="attn",
    norm_mlp=None,
    mlp="mlp",
    position_scheme="rotary",
    scheme="parallel",
)
GPT_NEOX = ArchitectureTable(
    family="gpt_neox",
    model_types=("gpt_neox",),
    blocks="layers",
    embed="embed_in",
    final_norm="final_layer_norm",
    norm_attn="input_layernorm",
    attn="attention",
    norm_mlp="post_attention_layernorm",
    mlp="mlp",
    position_scheme="rotary",
    parallel_when=("use_parallel_residual",),
)
PHI = replace(
    LLAMA, family="phi", model_types=("phi",), final_norm="final_layernorm", norm_mlp=None, scheme="parallel"
)
COHERE = replace(PHI, family="cohere", model_types=("cohere",), final_norm="norm")
FALCON = ArchitectureTable(
    family="falcon",
    model_types=("falcon",),
    blocks="h",
    embed="word_embeddings",
    final_norm="ln_f",
    norm_attn=("ln_attn", "input_layernorm"),
    attn="self_attention",
    norm_mlp=("ln_mlp", "post_attention_layernorm"),
    mlp="mlp",
    position_scheme="rotary",
    parallel_when=("parallel_attn", "new_decoder_architecture"),
    alibi_when=("alibi",),
)
# BLOOM's attention and MLP modules add the residual themselves; their output projections do not.
BLOOM = ArchitectureTable(
    family="bloom",
    model_types=("bloom",),
    blocks="h",
    embed="word_embeddings",
    final_norm="ln_f",
    norm_attn="input_layernorm",
    attn="self_attention.dense",
    norm_mlp="post_attention_layernorm",
    mlp="mlp.dense_4h_to_h",
    position_scheme="alibi",
    refuse_when=(
        ("apply_residual_connection_post_layernorm", True, "the residual is taken after the norm, so the block input is not part of its output"),
        ("slow_but_exact", True, "slow_but_exact splits the output projections, so no module yields the contribution"),
    ),
)

# --- sequential pre-norm with LLaMA module names: RMSNorm or LayerNorm, dense or mixture-of-experts MLP --
LLAMA_NAMED = replace(
    LLAMA,
    family="llama-named",
    model_types=(
        "phi3", "mixtral", "qwen2_moe", "qwen3_moe", "starcoder2", "olmo", "olmoe", "helium", "internlm3",
        "gemma", "ministral", "smollm3", "seed_oss", "arcee", "glm", "hunyuan_v1_dense",
    ),
)
STABLELM = replace(LLAMA, family="stablelm", model_types=("stablelm",), parallel_when=("use_parallel_residual",))
GRANITE = replace(
    LLAMA,
    family="granite",
    model_types=("granite", "granitemoe", "granitemoeshared"),
    mlp=("mlp", "block_sparse_moe"),
    residual_scale="residual_multiplier",
)
APERTUS = replace(LLAMA, family="apertus", model_types=("apertus",), norm_attn="attention_layernorm", norm_mlp="feedforward_layernorm")
VAULTGEMMA = replace(LLAMA, family="vaultgemma", model_types=("vaultgemma",), norm_mlp="pre_feedforward_layernorm")

# --- sandwich norms: the residual receives post_norm(sublayer(pre_norm(x))) --------------------------
GEMMA2 = replace(
    LLAMA,
    family="gemma2",
    model_types=("gemma2", "gemma3_text"),
    attn="post_attention_layernorm",
    norm_mlp="pre_feedforward_layernorm",
    mlp="post_feedforward_layernorm",
)
# OLMo-2: no pre-sublayer norm at all; the sublayers read the raw residual stream.
OLMO2 = replace(
    LLAMA,
    family="olmo2",
    model_types=("olmo2", "olmo3", "exaone4"),
    norm_attn=None,
    attn="post_attention_layernorm",
    norm_mlp=None,
    resid_mid_at="mlp",
    mlp="post_feedforward_layernorm",
)

FAMILY_TABLES: tuple[ArchitectureTable, ...] = (
    GPT_NEO, GPT_BIGCODE, OPT, BIOGPT, XGLM, GPTJ, GPT_NEOX, PHI, COHERE, FALCON, BLOOM,
    LLAMA_NAMED, STABLELM, GRANITE, APERTUS, VAULTGEMMA, GEMMA2, OLMO2,
)
