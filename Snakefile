# The workflow: conf/ (Hydra) -> plan -> one job per experiment -> results.parquet -> reports/.
# `snakemake --cores N` runs the suite named in conf/config.yaml; `--config suite=NAME` picks another.
import os
import subprocess
import sys
import time
from glob import glob

from snakemake.logging import logger

from tradeoffs.pipeline.failures import collect_inputs, finishable, recorded_since
from tradeoffs.pipeline.plan import check_workflow_config, default_suite, workflow_plan
from tradeoffs.report import FIGURES, TABLES, planned_products


# report.html opens on the claims' verdicts once the claims rule has written them (workflow.rst includes them).
report: "workflow/report/workflow.rst" if os.path.isfile("reports/claims_summary.rst") else "workflow/report/about.rst"


check_workflow_config(config)  # a misspelt --config key is an error, not the default suite
# A cluster job reads the plan its run submitted it with (tradeoffs.pipeline.plan.workflow_plan).
PLAN = workflow_plan(config.get("suite", default_suite()), cluster_job=workflow.remote_exec)
PY = sys.executable  # the interpreter running Snakemake: the project venv
ENVIRONMENT = "../../environment.yml"  # for --use-conda; paths are relative to workflow/rules/
KINDS = PLAN.kinds()
STUDIES = PLAN.studies()
REPORT_FIGURES = planned_products(FIGURES, STUDIES)
REPORT_TABLES = planned_products(TABLES, STUDIES)
REFERENCE_SETS = sorted(glob("reports/reference/*.parquet"))  # other machines' runs, drawn beside this one's
STARTED = time.time()


include: "workflow/rules/common.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/claims.smk"


rule all:
    default_target: True
    input:
        "results/results.parquet",
        expand("reports/figures/{name}.png", name=REPORT_FIGURES),
        expand("reports/tables/{name}.csv", name=REPORT_TABLES),
        "reports/claims.md",


# A job that could not write its result (a read-only or full results/<kind>/) leaves its error row in
# results/failed/<kind>/<name>/ (tradeoffs.pipeline.failures), or is recorded here when its folder cannot be written.
# Snakemake still counts the job failed and so never runs collect: once every experiment has a result or such
# a row, one more pass writes the table, the report and the claims (Snakemake then still exits 1).
onerror:
    collect_inputs(PLAN.experiments, probe=True, create=False, warn=logger.warning)
    for line in recorded_since(PLAN.experiments, since=STARTED):
        logger.error(line)
    second_pass = not os.environ.get("TRADEOFFS_SECOND_PASS")
    if second_pass and finishable(PLAN.experiments, STARTED, "results/results.parquet"):
        logger.warning("Every experiment has a result or an error row: collect, the report and the claims run now.")
        second = subprocess.run(
            [PY, "-m", "snakemake", "--snakefile", workflow.main_snakefile, "--cores", str(workflow.cores)]
            + ["--nolock", "--workflow-profile", "none", "--config", f"suite={PLAN.suite}"],
            env={**os.environ, "TRADEOFFS_SECOND_PASS": "1"},
        )
        if second.returncode:
            logger.error(f"The pass for collect and the report failed too (exit status {second.returncode}).")
