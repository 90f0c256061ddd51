"""What the study takes from the network: fetched once where the network is, verified, and read
offline by every other job.

Snakemake's local rules (workflow/rules/prefetch.smk), which run where Snakemake itself runs (the
login node of a cluster), fetch each hub model at each revision the study uses, the hub datasets,
the auto-interp LLM's weights and GloVe. Hub artefacts go into one cache directory laid out as an
HF_HOME; each gets a completion record, written last, which is the input of every job that reads it.
Every other job runs with the hub offline (`job_environment`) and resolves what it reads to the
cached copy (`cached_snapshot`); a missing one is a MissingDownload naming the rule that fetches it.

Three modules: `artefacts` (what the study fetches, from its config), `offline` (what jobs read,
and where), `download` (the fetch rules' own work). The planner estimates their sizes
(saerand.planner.download_estimate).
"""
