# numerics: quantization error of a number format on synthetic data (tradeoffs.kinds.numerics).


rule numerics:
    output:
        result="results/numerics/{name}/result.json",
    params:
        py=PY,
        id="numerics/{name}",
        config=planned_config("numerics"),
    log:
        "results/numerics/{name}/log.txt",
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        JOB_COMMAND
