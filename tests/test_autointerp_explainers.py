"""The explainer registry: each entry's module explains and scores, the config and the rules take
their names from it, and a served explainer's jobs sit in the LLM server's group."""

import copy
import inspect
from collections import Counter
from pathlib import Path

import pytest
import yaml

from saerand.autointerp.explainers import EXPLAINERS, OFFLINE, SERVED, Explainer, registered_explainer
from saerand.config import SCHEMA, ConfigError, load_schema, validate_config
from saerand.rules import CPU_AUTOINTERP_GROUP_RULES, LLM_GROUP_RULES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_every_explainer_module_explains_and_scores(name):
    explainer = EXPLAINERS[name]
    assert explainer.name == name and explainer.description and explainer.figure_label
    run = explainer.explain_and_score()
    assert inspect.iscoroutinefunction(run)
    assert list(inspect.signature(run).parameters) == ["records", "log", "tokenizer", "settings", "server_file"]


def test_the_paper_explainer_is_served_and_the_null_runs_offline():
    assert list(EXPLAINERS) == ["llm", "tokens"]
    assert SERVED == ("llm",) and OFFLINE == ("tokens",)
    assert len({e.figure_label for e in EXPLAINERS.values()}) == len(EXPLAINERS)


def test_the_schema_lists_the_registry_and_refuses_others():
    schema = load_schema(SCHEMA)
    assert schema["properties"]["autointerp"]["properties"]["explainers"]["items"]["enum"] == list(EXPLAINERS)
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    bad = copy.deepcopy(demo)
    bad["autointerp"]["explainers"] = ["tokens", "bigrams"]
    with pytest.raises(ConfigError, match=r"config key 'autointerp.explainers\[1\]': 'bigrams' is not one of"):
        validate_config(bad, SCHEMA)
    with pytest.raises(KeyError, match="'bigrams' is not an explainer; registered: llm, tokens"):
        registered_explainer("bigrams")


def test_a_new_explainer_is_one_entry_whose_module_is_looked_up_when_it_runs():
    entry = Explainer("bigrams", "bigram null", "bigram null", "no_such_module", serves_llm=False)
    with pytest.raises(ModuleNotFoundError, match="saerand.autointerp.no_such_module"):
        entry.explain_and_score()


def test_each_explainers_jobs_run_where_its_entry_says(paper, paper_jobs):
    """The paper's study: every SAE is auto-interpreted once per explainer, the served one's in the
    LLM server's group (rule autointerp_llm), the others in CPU jobs (rule autointerp_cpu)."""
    [served_rule] = [rule for rule in LLM_GROUP_RULES if rule != "llm_server"]
    [cpu_rule] = CPU_AUTOINTERP_GROUP_RULES
    by_explainer = Counter(
        (job.rule, job.wildcards["explainer"]) for job in paper_jobs if job.rule in (served_rule, cpu_rule)
    )
    assert set(paper["autointerp"]["explainers"]) == set(EXPLAINERS)
    assert {explainer for _, explainer in by_explainer} == set(EXPLAINERS)
    for rule, explainer in by_explainer:
        assert rule == (served_rule if EXPLAINERS[explainer].serves_llm else cpu_rule), (rule, explainer)
    counts = set(by_explainer.values())
    assert len(counts) == 1 and counts.pop() > 0, by_explainer
