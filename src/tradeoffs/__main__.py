"""Command line: `python -m tradeoffs <command>` (also installed as `tradeoffs`).

<kind> [key=value ...]   run one experiment as a Hydra app (e.g. `numerics format=mxfp4`); writes
                         results/<kind>/<id>/result.json. Hydra's --cfg job, --help and -m work.
bench gemm|qdq [...]     side-by-side ratio benchmarks in fresh processes (tradeoffs.bench.cli; --help)
bench train [...]        training loop vs a minimal loop, recipes vs fp32 (tradeoffs.train.benchmark; --help)
fit LAW RUNS.csv [...]   fit a scaling law to a table of runs; parameters with intervals (tradeoffs.fit.cli; --help)
plan [--suite S]         validate a suite and print its experiment ids
job --id ID --config J   run one planned experiment from its resolved config (used by Snakemake)
collect OUT.parquet OUT.csv RESULT.json ...   gather results into the tidy table
figure NAME TABLE OUT    draw one report figure from the tidy table
table NAME TABLE OUT     write one report table from the tidy table
reference NAME [...]     keep this run's GEMM/inference benchmarks as reports/reference/NAME.parquet, a
                         reference set the report draws beside later runs (e.g. after a run on a GPU)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tradeoffs.config import EXPERIMENT_SCHEMAS
from tradeoffs.errors import ConfigError

BENCH_COMMANDS = ("gemm", "qdq", "train")  # `bench gemm|qdq|train`: ratio benchmarks; `bench key=value`: the kind
HYDRA_QUIET = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none", "hydra/hydra_logging=none")


def _run_hydra_app(kind: str, argv: list[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from tradeoffs.config import config_hash, register_schemas, to_typed
    from tradeoffs.paths import conf_dir, results_dir
    from tradeoffs.plan import make_id
    from tradeoffs.runner import run_experiment

    def task(cfg: DictConfig) -> None:
        try:
            config = to_typed(cfg, kind)
        except ConfigError as error:
            sys.exit(f"error: {error}")
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
        labels = [o.split("=", 1)[1] for o in overrides if "=" in o]
        experiment_id = make_id(kind, labels, config_hash(config))
        record = run_experiment(experiment_id, config, results_dir() / experiment_id / "result.json")
        print(f"{experiment_id}: {record.status} {record.message}".rstrip())
        for metric in record.metrics:
            labels_text = "".join(f" {k}={v}" for k, v in metric.labels.items())
            print(f"  {metric.name}{labels_text} = {metric.value:.6g} {metric.unit}".rstrip())

    register_schemas()
    sys.argv = [f"tradeoffs {kind}", *argv, *HYDRA_QUIET]
    hydra.main(config_path=str(conf_dir()), config_name=kind, version_base=None)(task)()


def _commands() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeoffs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="validate a suite and list its experiments")
    plan.add_argument("--suite", default=None, help="suite name in conf/suite/ (default: conf/config.yaml)")
    job = sub.add_parser("job", help="run one planned experiment (Snakemake calls this)")
    job.add_argument("--id", required=True)
    job.add_argument("--config", required=True, help="the resolved config as JSON")
    job.add_argument("--out", required=True, type=Path, help="path of result.json")
    job.add_argument("--threads", type=int, default=None)
    collect = sub.add_parser("collect", help="gather result.json files into the tidy table")
    collect.add_argument("parquet", type=Path)
    collect.add_argument("csv", type=Path)
    collect.add_argument("results", nargs="*", type=Path)
    for name in ("figure", "table"):
        command = sub.add_parser(name, help=f"write one report {name}")
        command.add_argument("name")
        command.add_argument("table", type=Path, help="results/results.parquet")
        command.add_argument("out", type=Path)
        command.add_argument("--reference", nargs="*", type=Path, default=[], help="reference sets drawn beside")
    reference = sub.add_parser("reference", help="keep this run's benchmarks as a reference set of the report")
    reference.add_argument("name", help="the set's name, e.g. h100_sxm")
    reference.add_argument("--results", type=Path, default=Path("results/results.parquet"))
    reference.add_argument("--benchmarks", nargs="+", default=["gemm", "inference"], help="bench benchmarks kept")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:2] == ["bench", "train"]:
        from tradeoffs.train.benchmark import main as train_benchmark

        train_benchmark(argv[2:])
        return
    if argv[:1] == ["fit"]:
        from tradeoffs.fit.cli import main as fit_main

        fit_main(argv[1:])
        return
    if argv[:1] == ["bench"] and argv[1:2] and argv[1] in BENCH_COMMANDS:
        from tradeoffs.bench.cli import main as bench_main

        bench_main(argv[1:])
        return
    if argv and argv[0] in EXPERIMENT_SCHEMAS:
        _run_hydra_app(argv[0], argv[1:])
        return
    args = _commands().parse_args(argv)
    try:
        if args.command == "plan":
            from tradeoffs.plan import build_plan, default_suite

            plan = build_plan(args.suite or default_suite())
            for experiment in plan.experiments:
                print(experiment.id)
            print(f"{len(plan.experiments)} experiments in suite '{plan.suite}'", file=sys.stderr)
        elif args.command == "job":
            from tradeoffs.config import to_typed
            from tradeoffs.runner import run_experiment

            config = to_typed(json.loads(args.config))
            record = run_experiment(args.id, config, args.out, job_threads=args.threads)
            print(f"{args.id}: {record.status} {record.message}".rstrip())
        elif args.command == "collect":
            from tradeoffs.results import collect, write_table

            write_table(collect(args.results), args.parquet, args.csv)
        elif args.command == "reference":
            from tradeoffs.report.reference import export_reference

            print(f"wrote {export_reference(args.results, args.name, tuple(args.benchmarks))}")
        else:
            from tradeoffs.report import write_figure, write_table_file

            writer = write_figure if args.command == "figure" else write_table_file
            writer(args.name, args.table, args.out, args.reference)
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
