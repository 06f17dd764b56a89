"""Model types refused up front, with the reason an adapter cannot fix.

Encoders (BERT, RoBERTa, MiniLM, MPNet and kin) are refused rather than supported: their blocks are
post-norm, ``LayerNorm(x + sublayer(x))``, so no residual stream exists that attn_out and mlp_out are
added to, and they attend bidirectionally, so "position" and "next-token geometry" mean something
else. Encoder-decoders read an encoder through cross-attention; state-space and recurrent stacks
have no attention + MLP blocks at all. The inferred path would refuse most of these too, but only
after loading the weights and with a less useful message.
"""

from __future__ import annotations

ENCODER = (
    "a bidirectional encoder with post-norm blocks (LayerNorm after each residual add): there is no residual "
    "stream for attn_out and mlp_out to add to, and no adapter can change that; use a decoder-only causal LM"
)
ENCODER_DECODER = (
    "an encoder-decoder (seq2seq) model: its decoder blocks read the encoder through cross-attention, so a "
    "decoder-only capture does not apply; use a decoder-only causal LM"
)
RECURRENT = (
    "a state-space / recurrent model: its blocks hold no attention + MLP pair whose outputs add to a residual "
    "stream in the way geomcheck's sites assume"
)
BIDIRECTIONAL = (
    "a bidirectional encoder (pre-norm, but trained without a causal mask): geomcheck's properties assume "
    "next-token causal geometry, and no adapter can change what the model was trained to do; use a causal LM"
)
HYBRID = (
    "a hybrid stack mixing attention with state-space, linear-attention or convolution blocks: there is no "
    "single attention + MLP block layout to capture; use a pure-attention model"
)
SPECIAL_RESIDUAL = (
    "a non-standard residual (two-stream or reversible): a block's output is not its input plus two "
    "contributions, and no adapter can change that"
)
POST_NORM_DECODER = (
    "a post-norm decoder (LayerNorm after each residual add): there is no residual stream for attn_out and "
    "mlp_out to add to, and no adapter can change that"
)

REFUSED: dict[str, str] = {
    **dict.fromkeys(
        (
            "bert", "bert-generation", "big_bird", "camembert", "data2vec-text", "electra", "ernie", "megatron-bert",
            "rembert", "roberta", "roc_bert", "roformer", "xlm", "xlm-roberta", "xmod", "mpnet", "distilbert",
            "modernbert", "albert", "deberta", "deberta-v2",
        ),
        ENCODER,
    ),
    **dict.fromkeys(
        (
            "bart", "bigbird_pegasus", "blenderbot", "blenderbot-small", "marian", "mbart", "mvp", "pegasus",
            "plbart", "prophetnet", "trocr", "whisper", "musicgen", "musicgen_melody", "t5", "mt5", "umt5",
        ),
        ENCODER_DECODER,
    ),
    **dict.fromkeys(("mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm", "recurrent_gemma"), RECURRENT),
    **dict.fromkeys(("openai-gpt",), POST_NORM_DECODER),
    **dict.fromkeys(("roberta-prelayernorm", "xlm-roberta-xl"), BIDIRECTIONAL),
    **dict.fromkeys(
        (
            "bamba", "jamba", "granitemoehybrid", "nemotron_h", "falcon_h1", "zamba", "zamba2", "lfm2", "lfm2_moe",
            "lfm3", "olmo_hybrid", "kimi_linear", "bailing_hybrid", "minimax", "lara_mini",
        ),
        HYBRID,
    ),
    **dict.fromkeys(("xlnet", "reformer"), SPECIAL_RESIDUAL),
}


def refusal_for(model_type: str) -> str | None:
    return REFUSED.get(model_type)


def composite_refusal(config: object) -> str | None:
    """Why a composite (multimodal or multi-model) config is refused; takes a config or its class.

    Such checkpoints wrap a language model next to vision, audio or patching sub-models; geomcheck
    captures one decoder stack, so the remedy is to load the language model on its own.
    """
    sub = dict(getattr(config, "sub_configs", None) or {})
    if not sub:
        return None
    text = sub.pop("text_config", None)
    text_type = getattr(text, "model_type", "") if text is not None else ""
    if not sub and text_type in ("", None):
        return "a wrapper around another model type's text model: load that language model directly"
    parts = ", ".join(sorted(sub)) or "text_config"
    target = f" (model type {text_type!r})" if text_type else ""
    return (
        f"a composite model ({parts} next to the language model): geomcheck captures one decoder stack; "
        f"load its language model{target} on its own"
    )
