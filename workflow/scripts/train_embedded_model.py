from transformers import AutoTokenizer

from saerand.atomic import atomic_directory, write_json
from saerand.corpus import text_file_dataset
from saerand.data import token_sequences
from saerand.jobs import start_job
from saerand.provenance import provenance
from saerand.tiny_model import neox_config, save_revision, train_language_model, unigram_cross_entropy

start_job(snakemake.log[0], snakemake.threads)
embedded = snakemake.params.embedded
context = embedded["architecture"]["context_length"]
tokenizer = AutoTokenizer.from_pretrained(snakemake.input.tokenizer)
train_ids = token_sequences(text_file_dataset(snakemake.input.train), tokenizer, context, None)
eval_ids = token_sequences(text_file_dataset(snakemake.input.eval), tokenizer, context, None)
print(f"training tokens: {train_ids.size}, held-out tokens: {eval_ids.size}")

init, trained, log = train_language_model(
    neox_config(embedded["architecture"], len(tokenizer)), embedded["training"], train_ids, eval_ids
)
summary = {
    "log": log,
    "unigram_eval_ce": unigram_cross_entropy(train_ids, eval_ids, len(tokenizer)),
    "train_tokens": int(train_ids.size),
    "eval_tokens": int(eval_ids.size),
}
print(summary)
with atomic_directory(snakemake.output[0]) as staging:
    for revision, model in (("step0", init), ("main", trained)):
        save_revision(model, tokenizer, staging / revision)
        write_json(
            staging / revision / "provenance.json",
            provenance(embedded_model=embedded, revision=revision, seed=embedded["training"]["seed"]),
        )
    write_json(staging / "training_log.json", summary)
