# The workflow: conf/ (Hydra) -> plan -> one job per experiment -> results.parquet -> reports/.
# `snakemake --cores N` runs the suite named in conf/config.yaml; `--config suite=NAME` picks another.
import sys

from tradeoffs.__main__ import default_suite
from tradeoffs.plan import load_plan
from tradeoffs.report import FIGURES, TABLES


report: "workflow/report/workflow.rst"


PLAN = load_plan(config.get("suite", default_suite()))
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
