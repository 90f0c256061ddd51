# Sparse autoencoders on trained and randomly initialised transformers (Heap et al. 2025).
# Paper study: config/config.yaml (the default). Offline embedded default: --configfile config/demo.yaml.

import os
from pathlib import Path

from snakemake.utils import min_version

from saerand.cluster import check_account, check_free_space, uses_slurm
from saerand.config import load_config, validate_config
from saerand.fetch.offline import job_environment
from saerand.rules import LOCAL_RULES
from saerand.planner import disk_high_water, downloads_of
from saerand.settings import study_settings

min_version("9.0")


report: "workflow/report/workflow.rst"


# Jobs inherit this: one progress line per 10 s keeps multi-hour job logs small.
os.environ.setdefault("TQDM_MININTERVAL", "10")


# Validate before any job runs; defaults from the schema are filled in.
# This file's folder, also where another workflow uses this one as a module (workflow.basedir is then its own).
REPOSITORY = Path(workflow.current_basedir)
SCHEMA = REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"
if config:
    config.update(validate_config(config, SCHEMA))
else:
    config.update(load_config(REPOSITORY / "config" / "config.yaml", SCHEMA))
# Typed, for the rules' own use; jobs get sections of `config` as params (their repr is what
# Snakemake compares to decide a rerun) and type them in their scripts.
SETTINGS = study_settings(config)


# Jobs read the hub offline from the download cache; only the fetch rules (prefetch.smk) go online.
os.environ.update(job_environment(SETTINGS.prefetch.hf_home))


include: "workflow/rules/common.smk"
include: "workflow/rules/prefetch.smk"
include: "workflow/rules/embedded_model.smk"
include: "workflow/rules/tokens.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/sae.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/autointerp.smk"
include: "workflow/rules/browser.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/publish.smk"


rule all:
    default_target: True
    input:
        METRICS_TABLE,
        CLAIMS_TABLE,
        SAE_METRICS_FIGURE,
        [TRAINING_CURVES_FIGURE.format(model=m) for m in config["models"] if curve_saes(m)],
        [SWEEP_FIGURE] if "sweep" in config else [],
        [FIGURE4] if "toy" in config else [],
        [TOY_FIGURES.format(toy_dataset=dataset) for dataset in TOY_DATASETS],
        [f"{sae.directory}/saelens" for sae in SAE_TARGETS] if SETTINGS.export.saelens else [],
        [ROC_FIGURE.format(model=m, explainer=e) for m in config["models"] for e in AUTOINTERP["explainers"]]
        if AUTOINTERP
        else [],
        (
            [BROWSER.format(model=m, explainer=e) for m in config["models"] for e in AUTOINTERP["explainers"]]
            if AUTOINTERP
            else []
        ),


# Before anything goes to Slurm: every job has an account to be charged to, and the study's disk
# high-water mark fits where it runs.
onstart:
    if uses_slurm(workflow):
        check_account(workflow.dag.needrun_jobs())
        check_free_space(disk_high_water(COSTS, downloads_of(config)))


# Run where Snakemake runs, never as cluster jobs (saerand.rules says which and why). The
# `localrules:` directive takes literal names only; this is the call it compiles to.
workflow.localrules(*(rule.name for rule in workflow.rules if rule.name in LOCAL_RULES))
