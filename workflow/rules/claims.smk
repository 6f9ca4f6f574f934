# The papers' claims: a verdict per claim and part from the tidy table (conf/claims.yaml,
# tradeoffs.report.claims) into reports/claims.md and reports/tables/claims.csv. A local rule: seconds, on the
# machine Snakemake runs on.


rule claims:
    localrule: True
    input:
        table="results/results.parquet",
        claims="conf/claims.yaml",
        reference=REFERENCE_SETS,
    output:
        md=report("reports/claims.md", caption="../report/claims.rst", category="Claims"),
        csv=report("reports/tables/claims.csv", caption="../report/table_claims.rst", category="Claims"),
        summary="reports/claims_summary.rst",  # the verdict summary report.html opens on (workflow.rst)
    log:
        "results/logs/claims.log",
    params:
        py=PY,
    conda:
        ENVIRONMENT
    shell:
        "{params.py} -m tradeoffs.worker claims {input.table} --md {output.md} --csv {output.csv} --summary {output.summary} "
        "--reference {input.reference} > {log} 2>&1"
