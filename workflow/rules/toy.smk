# Section 4 / Appendix C: toy models of superposition. Each dataset (superposed toy data, GloVe
# word vectors, a subject model's input embeddings) is swept per seed: the data, its Gaussian
# control and both through one random MLP, an L1 SAE per (latent count, L1 coefficient) on each.


if SETTINGS.toy:

    rule toy_figure4:
        output:
            report(
                FIGURE4,
                caption="../report/figure4.rst",
                category=SECTION4,
                labels={"item": "Figure 4"},
            ),
        log:
            "logs/toy_figure4.log",
        benchmark:
            "benchmarks/toy_figure4.tsv"
        conda:
            "../../envs/toy.yaml"
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            lomax=config["toy"]["lomax"],
        script:
            "../scripts/toy_figure4.py"

    rule toy_sweep:
        input:
            toy_inputs,
        output:
            table=TOY_SEED_TABLE,
            provenance=TOY_SEED_PROVENANCE,
        log:
            "logs/toy_sweep/{toy_dataset}/seed-{seed}.log",
        benchmark:
            "benchmarks/toy_sweep/{toy_dataset}/seed-{seed}.tsv"
        wildcard_constraints:
            toy_dataset=toy_dataset_pattern(on_gpu=False),
        conda:
            "../../envs/toy.yaml"
        # Small matrices: one thread is many times faster than two fighting over a core.
        threads: 1
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            dataset=lambda wc: TOY_DATASETS[wc.toy_dataset],
            sae=config["toy"]["sae"],
            gaussian_control=config["toy"]["gaussian_control"],
        script:
            "../scripts/toy_sweep.py"

    # Sweeps of large matrices (config toy.gpu_sources): the same job under its own name, with a GPU
    # (the Slurm profile sends it to the GPU partition).
    use rule toy_sweep as toy_sweep_gpu with:
        log:
            "logs/toy_sweep_gpu/{toy_dataset}/seed-{seed}.log",
        benchmark:
            BENCHMARKS["toy_sweep_gpu"]
        wildcard_constraints:
            toy_dataset=toy_dataset_pattern(on_gpu=True),
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
            gpu=1,
            nodes=1,
            constraint=gpu_constraint,

    rule toy_aggregate:
        input:
            toy_seed_tables,
        output:
            table=TOY_METRICS,
            figures=report(
                directory(TOY_FIGURES),
                patterns=["{name}.png"],
                caption="../report/toy_pareto.rst",
                category=SECTION4,
                subcategory="{toy_dataset}",
                labels={"item": "{name}"},
            ),
        log:
            "logs/toy_aggregate/{toy_dataset}.log",
        benchmark:
            "benchmarks/toy_aggregate/{toy_dataset}.tsv"
        conda:
            "../../envs/toy.yaml"
        resources:
            mem_mb=job_mem_mb,
            runtime=job_runtime,
        params:
            dataset=lambda wc: TOY_DATASETS[wc.toy_dataset],
        script:
            "../scripts/toy_aggregate.py"
