import json

import numpy as np
import pytest
import torch
from sparsify import SparseCoder, SparseCoderConfig

from saerand.autointerp.delphi_compat import DelphiTokenizer, import_delphi
from saerand.autointerp.latents import draw_order, without_special_tokens, write_latent_cache
from saerand.settings import AutointerpSettings, section_settings
from saerand.variants import SubjectModel

SETTINGS = section_settings(
    AutointerpSettings, "autointerp", draw=40, seed=0, latents=6, min_examples=40, example_context=8, batch_sequences=16
)


@pytest.fixture()
def text_sequences(small_tokenizer, pydoc_text_file) -> np.ndarray:
    ids = small_tokenizer(pydoc_text_file.read_text()[:60_000])["input_ids"]
    return np.asarray(ids[: 64 * 32], dtype=np.int64).reshape(64, 32)


@pytest.fixture()
def latent_cache(tmp_path, tiny_neox, text_sequences):
    from saerand.cache import residual_stream

    torch.manual_seed(0)
    streams = residual_stream(SubjectModel(tiny_neox, "trained"), torch.as_tensor(text_sequences), [0, 2])
    saes = {}
    for layer in (0, 2):
        sae = SparseCoder(64, SparseCoderConfig(expansion_factor=2, k=8), "cpu")
        sae.b_dec.data = streams[layer].reshape(-1, 64).mean(0)  # centred: many latents fire
        saes[f"layers.{layer}"] = (layer, sae)
    # A second SAE on layer 2 (as the Figure 11 sweep has), encoded in the same pass.
    wide = SparseCoder(64, SparseCoderConfig(expansion_factor=4, k=8), "cpu")
    wide.b_dec.data = streams[2].reshape(-1, 64).mean(0)
    saes["x4-k8.layers.2"] = (2, wide)
    raw_dir = tmp_path / "latents"
    selections = write_latent_cache(
        raw_dir,
        SubjectModel(tiny_neox, "trained"),
        text_sequences,
        saes,
        SETTINGS,
        {"cache_ctx_len": 32, "model_name": "unused"},
    )
    return raw_dir, selections, saes


def test_latents_are_drawn_in_seeded_order_until_enough_are_usable(latent_cache, text_sequences):
    raw_dir, selections, _ = latent_cache
    for module, selection in selections.items():
        order = draw_order(selection.num_latents, seed=0)
        assert selection.drawn == selection.dead + selection.too_rare + len(selection.selected) <= SETTINGS.draw
        assert len(selection.selected) == SETTINGS.latents
        assert selection.selected == [int(x) for x in order[: selection.drawn] if x in selection.selected]
        assert min(selection.example_windows) >= SETTINGS.min_examples
        saved = json.loads((raw_dir / module / "selection.json").read_text())
        assert saved["selected"] == selection.selected
    assert selections["layers.0"].selected != selections["layers.2"].selected  # different SAEs, different latents
    assert selections["x4-k8.layers.2"].num_latents == 256 and selections["layers.2"].num_latents == 128
    assert sum(s.too_rare for s in selections.values()) > 0


def test_stored_activations_are_the_saes_own(latent_cache, tiny_neox, text_sequences):
    from safetensors.numpy import load_file

    from saerand.cache import residual_stream

    raw_dir, selections, saes = latent_cache
    stream = residual_stream(SubjectModel(tiny_neox, "trained"), torch.as_tensor(text_sequences[:1]), [2])[2][0]
    for module, file in (("layers.2", "0_127"), ("x4-k8.layers.2", "0_255")):
        data = load_file(raw_dir / module / f"{file}.safetensors")
        assert np.array_equal(data["tokens"], text_sequences)
        assert set(np.unique(data["locations"][:, 2])) == set(selections[module].selected)
        encoded = saes[module][1].encode(stream)
        first = data["locations"][:, 0] == 0
        for (_, position, latent), value in zip(data["locations"][first], data["activations"][first]):
            slot = (encoded.top_indices[position] == int(latent)).nonzero().item()
            assert value == pytest.approx(encoded.top_acts[position, slot].item(), rel=1e-3)


def test_delphi_loads_the_cache_unchanged(latent_cache, small_tokenizer):
    import_delphi()
    from delphi.config import ConstructorConfig, SamplerConfig
    from delphi.latents import LatentDataset

    raw_dir, selections, _ = latent_cache
    dataset = LatentDataset(
        raw_dir,
        SamplerConfig(n_examples_train=5, n_examples_test=5, n_quantiles=5),
        ConstructorConfig(example_ctx_len=8, min_examples=SETTINGS.min_examples, n_non_activating=5),
        tokenizer=DelphiTokenizer(small_tokenizer),
        modules=["layers.2"],
        latents={"layers.2": torch.tensor(selections["layers.2"].selected)},
    )
    records = list(dataset)
    assert sorted(record.latent.latent_index for record in records) == sorted(selections["layers.2"].selected)
    for record in records:
        assert len(record.train) == 5 and len(record.not_active) == 5
        example = record.train[0]
        assert len(example.str_tokens) == len(example.tokens) == 8  # one string per token


def test_delphi_without_the_tokenizer_fix_highlights_nothing(latent_cache, small_tokenizer):
    """The transformers 5 defect the wrapper fixes: one string for a whole window."""
    tokens = torch.tensor([5, 6, 7])
    assert DelphiTokenizer(small_tokenizer).batch_decode(tokens) == [small_tokenizer.decode([t]) for t in (5, 6, 7)]
    assert len(small_tokenizer.batch_decode(tokens)) != 3


def test_chat_template_gives_token_ids_as_delphis_offline_client_needs(small_tokenizer):
    small_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    messages = [{"role": "user", "content": "def f(x): return x"}]
    fixed = DelphiTokenizer(small_tokenizer).apply_chat_template(messages, tokenize=True)
    assert isinstance(fixed, list) and all(isinstance(t, int) for t in fixed)
    assert not isinstance(small_tokenizer.apply_chat_template(messages, tokenize=True), list)


def test_separators_are_dropped_from_the_stream_and_the_rest_cut_again():
    """As delphi's filter_bos: BOS/EOS (here 0) leave the stream; the rest keeps its order in
    sequences of the same length, the last partial one dropped."""
    sequences = np.array([[0, 5, 6, 7], [8, 0, 9, 10], [11, 12, 0, 13]])
    assert without_special_tokens(sequences, {0}).tolist() == [[5, 6, 7, 8], [9, 10, 11, 12]]
    assert without_special_tokens(sequences, set()).tolist() == sequences.tolist()
