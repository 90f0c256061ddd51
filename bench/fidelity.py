"""Fidelity benchmark: our SAE training from the zarr cache against sparsify's own online Trainer.

Same model, same tokens, same settings; prints the held-out explained variance of both per layer
and the largest absolute difference (goal: at most 0.01). Exits 1 if the goal is missed.

    .venv/bin/python bench/fidelity.py --model resources/models/tiny-neox --text resources/corpus
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from datasets import Dataset
from sparsify import SaeConfig, SparseCoder, TrainConfig, Trainer
from transformers import AutoConfig

from saerand.cache import ActivationCache, write_activation_cache
from saerand.corpus import text_file_dataset
from saerand.data import token_sequences
from saerand.metrics import evaluate_sae
from saerand.models import load_causal_lm, load_tokenizer
from saerand.sae_training import sparsify_adam_is_8bit, train_sae
from saerand.settings import SaeSettings, section_settings
from saerand.variants import SubjectModel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="local model directory with revisions")
    parser.add_argument("--revision", default="main")
    parser.add_argument("--text", required=True, type=Path, help="directory with train.txt and eval.txt")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--train-tokens", type=int, default=262144)
    parser.add_argument("--eval-tokens", type=int, default=32768)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    parser.add_argument("--optimizer", default="signum", choices=["signum", "adam"])
    parser.add_argument("--fused-adam", action="store_true", help="ours with torch's fused Adam (sparsify's: not)")
    args = parser.parse_args(argv)
    if args.fused_adam and args.optimizer != "adam":
        parser.error("--fused-adam needs --optimizer adam")

    tokenizer = load_tokenizer(args.model, args.revision)
    depth = AutoConfig.from_pretrained(Path(args.model) / args.revision).num_hidden_layers
    model = load_causal_lm(args.model, args.revision, n_layers=depth)
    layers = list(range(depth))
    train_ids = token_sequences(text_file_dataset(args.text / "train.txt"), tokenizer, args.context, args.train_tokens)
    eval_ids = token_sequences(text_file_dataset(args.text / "eval.txt"), tokenizer, args.context, args.eval_tokens)
    settings = section_settings(
        SaeSettings,
        "sae",
        expansion_factor=args.expansion,
        k=args.k,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        # Like for like: sparsify's Trainer takes 8-bit Adam where bitsandbytes is installed.
        adam_8bit=args.optimizer == "adam" and not args.fused_adam and sparsify_adam_is_8bit(),
        fused_adam=args.fused_adam,
        buffer_shuffle=False,
        device="cpu",
    )

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        subject = SubjectModel(model, "trained")
        for name, ids in (("train", train_ids), ("eval", eval_ids)):
            write_activation_cache(
                scratch / f"{name}.zarr", subject, ids, layers, batch_sequences=64, dtype="float32", chunk_rows=16384
            )
        train_cache, eval_cache = ActivationCache(scratch / "train.zarr"), ActivationCache(scratch / "eval.zarr")

        config = TrainConfig(
            SaeConfig(expansion_factor=args.expansion, k=args.k),
            batch_size=args.batch_size,
            layers=layers,
            optimizer=args.optimizer,
            save_dir=str(scratch / "sparsify"),
            run_name="run",
            log_to_wandb=False,
            save_every=10**9,
        )
        Trainer(config, Dataset.from_dict({"input_ids": train_ids.tolist()}).with_format("torch"), model).fit()

        print(f"{'layer':>5} {'EV ours':>9} {'EV sparsify':>12} {'|diff|':>9}")
        worst = 0.0
        for layer in layers:
            ours, _ = train_sae(train_cache, layer, settings, args.context)
            theirs = SparseCoder.load_from_disk(scratch / "sparsify" / "run" / f"layers.{layer}")
            ev = [
                evaluate_sae(sae, eval_cache, layer, batch_rows=4096, special_token_ids=[])[0]["explained_variance"]
                for sae in (ours, theirs)
            ]
            worst = max(worst, abs(ev[0] - ev[1]))
            print(f"{layer:>5} {ev[0]:>9.5f} {ev[1]:>12.5f} {abs(ev[0] - ev[1]):>9.2e}")
    print(f"largest |EV difference| = {worst:.2e} (goal <= 0.01)")
    return 0 if worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
