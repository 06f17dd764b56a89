"""Train a small LLaMA-config model on geomcheck's bundled corpus on CPU, saving checkpoints for ``geomcheck trajectory``.

    python examples/train_tiny.py                      # a few minutes on 2 CPU cores; writes runs/train_tiny/
    geomcheck trajectory runs/train_tiny --spec examples/tiny-llama.yaml --report reports/trajectory-train_tiny.html

The run saves its random initialisation as ``checkpoint-0`` and then a Trainer checkpoint every
``--save-every`` steps. ``GeomCheckCallback`` measures the live model every ``--measure-every`` steps
on a small input budget and logs each metric through the Trainer (see ``trainer_state.json``'s log
history in each checkpoint). docs/trajectories.md describes what the trajectory showed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from geomcheck.capture.inputs import bundled_corpus_text
from geomcheck.integrations.transformers import GeomCheckCallback

SPEC = Path(__file__).resolve().parent / "tiny-llama.yaml"


def word_tokenizer(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """Word-level: the corpus' most frequent words, the rest <unk>; enough for a model this small."""
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    specials = ["<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - 3])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>", model_max_length=256)


class Chunks(torch.utils.data.Dataset):
    """Every ``length``-token window of the corpus at a stride of ``length // 2``, each led by BOS."""

    def __init__(self, ids: list[int], bos: int, length: int) -> None:
        starts = range(0, len(ids) - length, length // 2)
        self.rows = torch.tensor([[bos, *ids[s:s + length]] for s in starts])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[index], "labels": self.rows[index]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/train_tiny", help="Trainer output folder (checkpoint-*/ inside)")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps")
    parser.add_argument("--save-every", type=int, default=50, help="save a checkpoint every N steps")
    parser.add_argument("--measure-every", type=int, default=200, help="GeomCheckCallback: measure every N steps (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    output = Path(args.output)
    text = bundled_corpus_text()
    tokenizer = word_tokenizer(text, vocab_size=2048)
    config = LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=192, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, vocab_size=len(tokenizer), bos_token_id=1, eos_token_id=2, pad_token_id=2,
                         tie_word_embeddings=True)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(output / "checkpoint-0")  # the random initialisation: step 0 of the trajectory
    tokenizer.save_pretrained(output / "checkpoint-0")
    dataset = Chunks(tokenizer(text)["input_ids"], tokenizer.bos_token_id, length=64)
    training = TrainingArguments(
        output_dir=str(output), max_steps=args.steps, per_device_train_batch_size=8, learning_rate=3e-3, warmup_steps=30,
        lr_scheduler_type="cosine", weight_decay=0.01, logging_steps=25, save_strategy="steps", save_steps=args.save_every,
        save_total_limit=None, report_to=[], use_cpu=True, seed=args.seed, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=training, train_dataset=dataset, processing_class=tokenizer, data_collator=default_data_collator)
    if args.measure_every:
        GeomCheckCallback(spec=SPEC, every_n_steps=args.measure_every, budget=1024).attach(trainer)
    started = time.perf_counter()
    trainer.train()
    print(f"trained {args.steps} steps on {len(dataset)} chunks of 64 tokens in {time.perf_counter() - started:.0f} s; "
          f"checkpoints in {output}")
    for entry in trainer.state.log_history:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items() if k in ("step", "loss") or k.startswith("geom/")
                 and "/block_" not in k}
        if len(shown) > 1:
            print(shown)


if __name__ == "__main__":
    main()
