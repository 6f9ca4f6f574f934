# One rule per experiment kind in the plan (numerics, crossover, lmul, ...): each job runs
# `python -m tradeoffs job` (through the warm worker locally, tradeoffs.worker) on its experiment's resolved
# config (tradeoffs.kinds.<kind>), with threads, resources and group from the plan (through common.smk).
# benchmark.tsv (Snakemake's) holds the job's wall time, start-up included: `tradeoffs bench suite` reads it.

for experiment_kind in KINDS:

    rule:
        name:
            experiment_kind
        input:
            planned_inputs(experiment_kind),
        output:
            result=f"results/{experiment_kind}/{{name}}/result.json",
        params:
            py=PY,
            id=f"{experiment_kind}/{{name}}",
            config=planned_config(experiment_kind),
        log:
            f"results/{experiment_kind}/{{name}}/log.txt",
        benchmark:
            f"results/{experiment_kind}/{{name}}/benchmark.tsv"
        conda:
            ENVIRONMENT
        threads: planned_threads(experiment_kind)
        group: planned_group(experiment_kind)
        resources:
            **planned_resources(experiment_kind),
        shell:
            JOB_COMMAND
