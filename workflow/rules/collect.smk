# collect: every planned result.json (failed and unsupported runs too) into one tidy table.
# A local rule: on a cluster it runs where Snakemake runs (seconds), not as a queued job.


def collected_results(wildcards):
    """Every planned result.json, or the error row recorded in its place (tradeoffs.failures): in a real run,
    an experiment whose folder cannot be written is recorded here, before the run, and not run."""
    real_run = workflow.executor_plugin is not None and not (workflow.dryrun or workflow.touch)
    return collect_inputs(PLAN.experiments, probe=real_run and workflow.is_main_process, warn=logger.warning)


rule collect:
    localrule: True
    input:
        collected_results,
    output:
        parquet="results/results.parquet",
        csv="results/results.csv",
    log:
        "results/collect.log",
    params:
        py=PY,
        suite=PLAN.suite,  # every row records the suite that planned it (the claims name it)
    conda:
        ENVIRONMENT
    shell:
        "{params.py} -m tradeoffs.worker collect --suite {params.suite} {output.parquet} {output.csv} {input} > {log} 2>&1"
