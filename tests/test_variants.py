import torch

from saerand.variants import EMBEDDING_PARAMETERS, SubjectModel, rerandomize


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def test_rerandomized_incl_emb_keeps_statistics_and_breaks_weights(tiny_neox):
    before = _snapshot(tiny_neox)
    record = rerandomize(tiny_neox, keep_embeddings=False, seed=1)
    after = _snapshot(tiny_neox)
    assert set(record) == set(before)  # LayerNorms and biases included
    for name, old in before.items():
        new = after[name]
        assert record[name]["mean"] == old.mean().item()
        if old.numel() >= 4096:  # large tensors: sample statistics match closely
            assert abs(new.mean().item() - old.mean().item()) < 0.05 * old.std().item() + 1e-3
            assert abs(new.std().item() / old.std().item() - 1) < 0.05
            assert abs(_correlation(new, old)) < 0.05, name
        assert not torch.equal(new, old), name


def test_rerandomized_excl_emb_keeps_embeddings(tiny_neox):
    before = _snapshot(tiny_neox)
    record = rerandomize(tiny_neox, keep_embeddings=True, seed=1)
    after = _snapshot(tiny_neox)
    for name in EMBEDDING_PARAMETERS:
        assert name not in record
        assert torch.equal(after[name], before[name])
    changed = [n for n in before if not torch.equal(after[n], before[n])]
    assert len(changed) == len(before) - len(EMBEDDING_PARAMETERS)


def test_rerandomization_is_seeded(tiny_neox, tiny_neox_config):
    from transformers import GPTNeoXForCausalLM

    twin = GPTNeoXForCausalLM(tiny_neox_config)
    twin.load_state_dict(tiny_neox.state_dict())
    rerandomize(tiny_neox, keep_embeddings=False, seed=7)
    rerandomize(twin, keep_embeddings=False, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(tiny_neox.parameters(), twin.parameters()))


def test_control_feeds_fresh_gaussian_noise_per_position(tiny_neox):
    subject = SubjectModel(tiny_neox, "control", noise_seed=3)
    ids = torch.zeros(2, 16, dtype=torch.long)  # the same token everywhere
    embeds = subject.model_inputs(ids)["inputs_embeds"]
    assert embeds.shape == (2, 16, 64)
    assert abs(embeds.mean().item()) < 0.1 and abs(embeds.std().item() - 1) < 0.1
    assert not torch.allclose(embeds[0, 0], embeds[0, 1])  # no consistent embedding per token
    again = SubjectModel(tiny_neox, "control", noise_seed=3).model_inputs(ids)["inputs_embeds"]
    assert torch.equal(embeds, again)


def test_other_variants_feed_token_ids(tiny_neox):
    ids = torch.arange(8).reshape(1, 8)
    assert SubjectModel(tiny_neox, "trained").model_inputs(ids) == {"input_ids": ids}
