# One rule per experiment kind in the plan (numerics, crossover, lmul, ...): each job runs
# `python -m tradeoffs job` on its experiment's resolved config (tradeoffs.kinds.<kind>).

for experiment_kind in KINDS:

    rule:
        name:
            experiment_kind
        output:
            result=f"results/{experiment_kind}/{{name}}/result.json",
        params:
            py=PY,
            id=f"{experiment_kind}/{{name}}",
            config=planned_config(experiment_kind),
        log:
            f"results/{experiment_kind}/{{name}}/log.txt",
        conda:
            ENVIRONMENT
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            JOB_COMMAND
