"""GPT-2: learned absolute positions, LayerNorm before attention and MLP, no BOS by convention."""

from geomcheck.models.adapters.table import ArchitectureTable

GPT2 = ArchitectureTable(
    family="gpt2",
    model_types=("gpt2",),
    blocks="h",
    embed="wte",
    pos_embed="wpe",
    final_norm="ln_f",
    norm_attn="ln_1",
    attn="attn",
    norm_mlp="ln_2",
    mlp="mlp",
    position_scheme="learned",
    # GPT-2 was trained on documents joined by <|endoftext|> and its tokenizer adds no BOS.
    prepend_bos=False,
)
