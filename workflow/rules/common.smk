# Helpers shared by the experiment rules: every rule gets its experiment's resolved config and its job's
# resources from the plan, so nothing about an experiment is restated in a rule.


def planned_config(kind):
    """params function: the resolved config (JSON) of the experiment named by the wildcards."""
    return lambda wildcards: PLAN[f"{kind}/{wildcards.name}"].config_json()


def planned_inputs(kind):
    """input function: the result files the experiment reads (e.g. a capture's trained checkpoint's run)."""
    return lambda wildcards: PLAN[f"{kind}/{wildcards.name}"].inputs


def _planned_resources(kind, wildcards, attempt=1):
    return PLAN[f"{kind}/{wildcards.name}"].resources(attempt)


def planned_threads(kind):
    """threads function: the experiment's threads (tradeoffs.resources)."""
    return lambda wildcards: _planned_resources(kind, wildcards).threads


def planned_group(kind):
    """group function: the kind's name for jobs small enough to share a cluster job, else none."""
    return lambda wildcards: _planned_resources(kind, wildcards).group


def planned_resources(kind):
    """resources of a rule, as `resources: **planned_resources(kind)`: mem_mb, runtime (minutes, both growing
    with each retry) and gpu, from the experiment's config (tradeoffs.resources)."""
    return {
        "mem_mb": lambda wildcards, attempt: _planned_resources(kind, wildcards, attempt).mem_mb,
        "runtime": lambda wildcards, attempt: _planned_resources(kind, wildcards, attempt).runtime,
        "gpu": lambda wildcards: _planned_resources(kind, wildcards).gpus,
    }


def collected_results(wildcards):
    """Every planned result.json, or the error row recorded in its place (tradeoffs.pipeline.failures): in a real run,
    an experiment whose folder cannot be written is recorded here, before the run, and not run."""
    real_run = workflow.executor_plugin is not None and not (workflow.dryrun or workflow.touch)
    return collect_inputs(PLAN.experiments, probe=real_run and workflow.is_main_process, warn=logger.warning)


# A job that fails (exits non-zero) without an error row, because its folder cannot be written (a full disk took
# its log), gets one in results/failed/ from tradeoffs.pipeline.failures, which then exits with the job's status.
JOB_COMMAND = (
    "{params.py} -m tradeoffs.worker job --id {params.id} --config {params.config:q} --out {output.result} "
    "--threads {threads} --inputs {input} --exit-zero-on-failure > {log} 2>&1 "
    "|| {params.py} -m tradeoffs.pipeline.failures {params.id} {output.result} {params.config:q} $?"
)
