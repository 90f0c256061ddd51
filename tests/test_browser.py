import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from saerand.autointerp import null_explainer, run
from saerand.autointerp.delphi_compat import DelphiTokenizer
from saerand.autointerp.figures import latent_cache
from saerand.autointerp.null_explainer import score_with_null
from saerand.browser import (
    SHADES,
    auroc_interval,
    comparison_page_name,
    sae_page_name,
    shaded,
    weighted_auroc,
    write_browser,
)
from saerand.intervals import resample_counts
from saerand.study import SaeTarget

from .browser_fixture import ensure_chromium, headless_chromium
from .conftest import RANDOM_LATENT, TOKEN_LATENT
from .test_autointerp_scoring import SETTINGS


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed if need be; a test opens it (headless_chromium) once its pages
    are written: Playwright's event loop would stop delphi's from running beside it."""
    reason = ensure_chromium()
    if reason:
        pytest.skip(reason)


@pytest.fixture()
def study(raw_dir, model_dir, tmp_path, monkeypatch) -> list[SaeTarget]:
    """A trained and a control SAE of one layer, each with the fixture's latent cache (a token
    latent and a random one) scored by the null explainer, laid out as the workflow lays them out;
    the control's token latent failed."""
    monkeypatch.chdir(tmp_path)
    saes = [SaeTarget("m", variant, 0, 4, 4) for variant in ("control", "trained")]

    def token_latent_fails(record, tokenizer, settings):
        if record.latent.latent_index == TOKEN_LATENT:
            raise ValueError("the scorer's answer did not parse")
        return score_with_null(record, tokenizer, settings)

    for sae in saes:
        shutil.copytree(raw_dir / "layers.0", Path(latent_cache(sae)) / sae.autointerp_module)
        with monkeypatch.context() as patch:
            if sae.variant == "control":
                patch.setattr(null_explainer, "score_with_null", token_latent_fails)
            run.score_sae(
                latent_cache(sae),
                sae.autointerp_module,
                model_dir,
                SETTINGS,
                sae.autointerp_directory("tokens"),
                "tokens",
            )
    return saes


def test_the_weighted_auroc_is_sklearns_with_sample_weights():
    rng = np.random.default_rng(0)
    activating = rng.random(60) < 0.4
    probability = np.round(rng.random(60), 1)  # ties count a half
    weights = resample_counts(60, 5, seed=1)
    expected = [roc_auc_score(activating, probability, sample_weight=w) for w in weights]
    assert weighted_auroc(activating, probability, weights) == pytest.approx(expected)
    low, high = auroc_interval(activating, probability, 500, seed=0)
    assert low < roc_auc_score(activating, probability) < high
    assert all(math.isnan(v) for v in auroc_interval([True, True], [0.1, 0.2], 10, 0))


def test_active_tokens_are_shaded_by_their_activation_and_text_is_escaped():
    line = shaded(["<a>", " b", " c"], [0.0, 1.0, 2.0], peak=2.0)
    assert "&lt;a&gt;" in line and f'<mark class="a{SHADES // 2}" title="1">' in line
    assert f'<mark class="a{SHADES}" title="2"> c</mark>' in line


def _luminance(css: str) -> float:
    red, green, blue = (int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def _open(browser, path: Path):
    """The page at `path`, with every request and console error it made; requests outside file://
    are aborted (and recorded)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://") else route.abort())
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, requests, errors


def test_the_browser_pages_render_offline_in_a_real_browser(study, chromium, small_tokenizer, tmp_path):
    output = tmp_path / "results" / "browser" / "m_tokens"
    sizes = write_browser(study, "tokens", DelphiTokenizer(small_tokenizer), SETTINGS, output, {"test": 1}, 5, 2)
    trained, control = (next(s for s in study if s.variant == v) for v in ("trained", "control"))
    assert set(sizes) == {"index.html", sae_page_name(trained), sae_page_name(control), comparison_page_name(trained)}
    assert sorted(p.name for p in output.iterdir()) == sorted(sizes)
    entries = {
        entry["latent"]: entry
        for entry in map(json.loads, Path(trained.autointerp_directory("tokens"), "latents.jsonl").open())
    }
    with headless_chromium() as browser:
        _check_pages(browser, output, sizes, trained, control, entries, small_tokenizer, tmp_path)


def _check_pages(browser, output, sizes, trained, control, entries, small_tokenizer, tmp_path):
    for name in sizes:
        text = (output / name).read_text()
        assert "<script" not in text and "http://" not in text and "https://" not in text
        page, requests, errors = _open(browser, output / name)
        assert errors == [] and all(url.startswith("file://") for url in requests), (errors, requests)
        timing = page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
        assert 0 < timing["loadEventEnd"] < 5000  # milliseconds
        for link in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
            assert (output / link.split("#")[0]).exists(), link
        if name == sae_page_name(trained):
            sae_page = page
    # The trained SAE's page: one row and one section per scored latent, its explanation and AUROCs.
    assert sae_page.eval_on_selector_all("table.latents tr", "rows => rows.length") == 1 + 2
    sections = sae_page.eval_on_selector_all("section", "sections => sections.map(s => s.id)")
    assert sections == [f"l{latent}" for latent in entries]
    body = sae_page.inner_text("body")
    for latent in (TOKEN_LATENT, RANDOM_LATENT):
        entry = entries[latent]
        section = sae_page.inner_text(f"#l{latent}")
        assert entry["explanation"] in section and f"fuzz AUROC {entry['fuzz_auroc']:.2f} [" in section
        low, high = (float(v) for v in section.split("fuzz AUROC ")[1].split("[")[1].split("]")[0].split(", "))
        assert low <= round(entry["fuzz_auroc"], 2) <= high
        assert f"{entry['detection_auroc']:.2f}" in body
        assert sae_page.locator(f"#l{latent} svg path").count() == 1  # the histogram
    assert entries[TOKEN_LATENT]["fuzz_auroc"] > 0.95
    # The token latent's top examples peak at 2 on token 300 (activation 1 elsewhere): deepest shade.
    top = sae_page.locator(f"#l{TOKEN_LATENT} .ex").first.inner_text()
    assert top.startswith("2.00") and small_tokenizer.decode([300]) in top
    # Shaded tokens: the stronger the activation, the darker the background.
    marks = sae_page.eval_on_selector_all(
        "mark", "marks => marks.map(m => [parseFloat(m.title), getComputedStyle(m).backgroundColor])"
    )
    assert len(marks) >= 30 and len({css for _, css in marks}) >= SHADES // 2
    ranked = sorted((activation, _luminance(css)) for activation, css in marks)
    assert all(a[1] >= b[1] for a, b in zip(ranked, ranked[1:]))
    # Quantile examples: every quantile of the fixture's settings.
    assert sae_page.locator(f"#l{RANDOM_LATENT} h4").count() == SETTINGS.quantiles
    screenshot = tmp_path / "trained.png"
    sae_page.screenshot(path=screenshot, full_page=True)
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    assert image.size[0] == 1200 and image.size[1] > 900
    orange = (pixels[:, 0] > 200) & (pixels[:, 2] < 120)  # the deep shades
    assert orange.sum() > 500 and len(np.unique(pixels, axis=0)) > 50
    # Side by side: the trained SAE's column first, one row per sampled latent.
    page, _, _ = _open(browser, output / comparison_page_name(trained))
    header = page.eval_on_selector_all("table.cmp th a", "links => links.map(a => a.textContent)")
    assert header == ["Trained", "Control"]
    assert page.eval_on_selector_all("table.cmp tr", "rows => rows.length") == 1 + 2
    cells = page.eval_on_selector_all("table.cmp tr", "rows => rows.map(r => r.cells.length)")
    assert cells == [2, 2, 2]
    assert "latent 5" in page.inner_text("table.cmp tr:nth-child(2) td:nth-child(2)")  # the control's one scored
    assert page.inner_text("table.cmp tr:nth-child(3) td:nth-child(2)") == ""
    # The control's page lists its failed latent with the reason.
    page, _, _ = _open(browser, output / sae_page_name(control))
    assert "failed: ValueError: the scorer's answer did not parse" in page.inner_text("table.latents")
    assert page.eval_on_selector_all("section", "sections => sections.map(s => s.id)") == [f"l{RANDOM_LATENT}"]
