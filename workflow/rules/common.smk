# Helpers shared by the experiment rules: every rule gets its experiment's resolved config from the plan.


def planned_config(kind):
    """params function: the resolved config (JSON) of the experiment named by the wildcards."""
    return lambda wildcards: PLAN[f"{kind}/{wildcards.name}"].config_json()


JOB_COMMAND = (
    "{params.py} -m tradeoffs job --id {params.id} --config {params.config:q} --out {output.result} "
    "--threads {threads} > {log} 2>&1"
)
