# numerics: quantization error of a number format on synthetic data (tradeoffs.kinds.numerics).


rule numerics:
    output:
        result="results/numerics/{name}/result.json",
    params:
        id="numerics/{name}",
        config=planned_config("numerics"),
    log:
        "results/numerics/{name}/log.txt",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        JOB_COMMAND
