import json

from PIL import Image

from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.autointerp.figures import appendix_d_figure, examples_table, marked, top_examples
from saerand.study import SaeTarget

from .conftest import RANDOM_LATENT, TOKEN_LATENT
from .test_autointerp_scoring import SETTINGS


def test_active_tokens_are_marked_with_their_activation():
    assert marked(["a", " cat", " sat"], [0.0, 2.5, 0.125]) == "a<< cat>>(2.50)<< sat>>(0.12)"


def test_appendix_d_lists_each_latents_three_strongest_examples(raw_dir, small_tokenizer, tmp_path, monkeypatch):
    """The token latent fires at 2 on token 300 and 1 on token 301: its top three windows peak at 2;
    the table marks them, and the figure draws one block per latent."""
    tokenizer = DelphiTokenizer(small_tokenizer)
    top = top_examples(raw_dir, "layers.0", tokenizer, SETTINGS, {TOKEN_LATENT, RANDOM_LATENT})
    assert set(top) == {TOKEN_LATENT, RANDOM_LATENT} and all(len(examples) == 3 for examples in top.values())
    assert [max(activations) for _, activations in top[TOKEN_LATENT]] == [2.0, 2.0, 2.0]
    peaks = [max(activations) for _, activations in top[RANDOM_LATENT]]
    assert peaks == sorted(peaks, reverse=True)
    # A scored SAE's latents.jsonl, where examples_table reads the listed latents.
    sae = SaeTarget("m", "trained", 0, 4, 4)
    monkeypatch.chdir(tmp_path)
    scores = tmp_path / sae.autointerp_directory("tokens")
    scores.mkdir(parents=True)
    entries = [
        {"latent": latent, "explanation": f"latent {latent}", "fuzz_auroc": 0.9, "detection_auroc": 0.8}
        | {"entropy_nats": 0.5, "shown": ["x"]}
        for latent in (TOKEN_LATENT, RANDOM_LATENT)
    ]
    (scores / "latents.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    examples = {(sae, latent): value for latent, value in top.items()}
    table = examples_table([sae], "tokens", 5, examples)
    token_row = table.set_index("latent").loc[TOKEN_LATENT]
    assert token_row["top_1_max"] == 2.0 and "(2.00)" in token_row["top_1"]
    assert f"<<{small_tokenizer.decode([300])}>>(2.00)" in token_row["top_1"]
    appendix_d_figure(table, examples, tmp_path / "appendix_d.png", {"test": True})
    with Image.open(tmp_path / "appendix_d.png") as image:
        assert image.size[1] > 0.32 * 2 * (1 + 3) * 100  # two blocks of a title and three examples
