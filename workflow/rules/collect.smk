# collect: every planned result.json (failed and unsupported runs too) into one tidy table.
# A local rule: on a cluster it runs where Snakemake runs (seconds), not as a queued job.


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
