# The workflow: conf/ (Hydra) -> plan -> one job per experiment -> results.parquet -> reports/.
# `snakemake --cores N` runs the suite named in conf/config.yaml; `--config suite=NAME` picks another.
import os
import sys

from tradeoffs.plan import default_suite, load_plan, plan_cache_path
from tradeoffs.report import FIGURES, TABLES


report: "workflow/report/workflow.rst"


SUITE = config.get("suite", default_suite())
# Snakemake parses this file again in every cluster job: a job reads the plan its run submitted it with (the
# path travels in $TRADEOFFS_PLAN through sbatch's environment), so editing conf/ during a run changes no job.
PLAN = load_plan(SUITE, os.environ.get("TRADEOFFS_PLAN") if workflow.remote_exec else None)
if not workflow.remote_exec:
    os.environ["TRADEOFFS_PLAN"] = str(plan_cache_path(SUITE))
PY = sys.executable  # the interpreter running Snakemake: the project venv
ENVIRONMENT = "../../environment.yml"  # for --use-conda; paths are relative to workflow/rules/
KINDS = PLAN.kinds()
STUDIES = PLAN.studies()
REPORT_FIGURES = [name for name, (study, _) in FIGURES.items() if study in STUDIES]
REPORT_TABLES = [name for name, (study, _) in TABLES.items() if study in STUDIES]


include: "workflow/rules/common.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/results.parquet",
        expand("reports/figures/{name}.png", name=REPORT_FIGURES),
        expand("reports/tables/{name}.csv", name=REPORT_TABLES),
