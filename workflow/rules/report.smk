# Report products: one rule per figure and table whose experiment kind is in the plan.
# Each writes PNG, SVG and the data it plots as CSV (figures) or CSV and Markdown (tables); report.html shows them
# under the paper they reproduce. Captions for `snakemake --report` are in workflow/report/<name>.rst. Local rules:
# on a cluster they run where Snakemake runs (seconds each), not as queued jobs.

for figure_name in REPORT_FIGURES:

    rule:
        name:
            f"figure_{figure_name}"
        localrule: True
        input:
            table="results/results.parquet",
            reference=REFERENCE_SETS,
        output:
            png=report(
                f"reports/figures/{figure_name}.png",
                caption=f"../report/{figure_name}.rst",
                category=FIGURES[figure_name].paper,
                subcategory="Figures",
            ),
            svg=f"reports/figures/{figure_name}.svg",
            data=f"reports/figures/{figure_name}.csv",
        log:
            f"results/logs/figure_{figure_name}.log",
        params:
            py=PY,
            name=figure_name,
        conda:
            ENVIRONMENT
        shell:
            "{params.py} -m tradeoffs.worker figure {params.name} {input.table} {output.png} --reference {input.reference} > {log} 2>&1"


for table_name in REPORT_TABLES:

    rule:
        name:
            f"table_{table_name}"
        localrule: True
        input:
            table="results/results.parquet",
            reference=REFERENCE_SETS,
        output:
            csv=report(
                f"reports/tables/{table_name}.csv",
                caption=f"../report/table_{table_name}.rst",
                category=TABLES[table_name].paper,
                subcategory="Tables",
            ),
            md=f"reports/tables/{table_name}.md",
        log:
            f"results/logs/table_{table_name}.log",
        params:
            py=PY,
            name=table_name,
        conda:
            ENVIRONMENT
        shell:
            "{params.py} -m tradeoffs.worker table {params.name} {input.table} {output.csv} --reference {input.reference} > {log} 2>&1"
