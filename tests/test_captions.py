"""The report's note on where a study differs from the paper, from its typed settings."""

from saerand.captions import deviations
from saerand.config import SCHEMA, load_config
from saerand.settings import study_settings

from .conftest import REPO


def test_the_papers_study_differs_only_in_its_token_counts(paper):
    assert deviations(study_settings(paper)) == (
        "**Differences from the paper:** 100,000,000 training and 1,048,576 held-out tokens per SAE."
    )


def test_the_demo_names_each_of_its_differences():
    demo = study_settings(load_config(REPO / "config" / "demo.yaml", SCHEMA))
    notes = deviations(demo).removeprefix("**Differences from the paper:** ").removesuffix(".").split("; ")
    assert notes[0].startswith("subject model tiny-neox is the workflow's embedded tiny GPT-NeoX")
    assert notes[1:3] == [
        "SAE expansion 16, k = 16 (the paper: 64, 32)",
        "50 latents interpreted per SAE (the paper: 100)",
    ]
    assert notes[3].startswith("explanations without an LLM (``tokens``: a null explainer")
    assert notes[-1] == "262,144 training and 32,768 held-out tokens per SAE"
