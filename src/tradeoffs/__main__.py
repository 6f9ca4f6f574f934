"""Command line: `python -m tradeoffs <command>` (also installed as `tradeoffs`).

<kind> [key=value ...]   run one experiment as a Hydra app (e.g. `numerics format=mxfp4`); writes
                         results/<kind>/<id>/result.json. Hydra's --cfg job, --help and -m work.
bench gemm|qdq [...]     side-by-side ratio benchmarks in fresh processes (tradeoffs.bench.cli; --help)
bench train [...]        training loop vs a minimal loop, recipes vs fp32 (tradeoffs.train.loop_speed; --help)
bench gptq [...]         GPTQ vs round-to-nearest and llmcompressor, CPU s per thread (tradeoffs.quant.gptq_speed)
bench suite [RESULTS]    where a finished run's time went: work, start-up, cold start per kind, critical path
fit LAW RUNS.csv [...]   fit a scaling law to a table of runs; parameters with intervals (tradeoffs.fit.cli; --help)
plan [--suite S]         validate a suite and print its experiment ids
job --id ID --config J   run one planned experiment from its resolved config (used by Snakemake)
clean --status S [...]   remove the results of a suite's runs that ended S (e.g. error) and the tidy table
                         (--dry-run lists them; removing ok results needs --yes),
                         so the next `snakemake` reruns them
collect OUT.parquet OUT.csv RESULT.json ... [--suite S]   gather results into the tidy table (each row marked
                         with the suite that planned it)
figure NAME TABLE OUT    draw one report figure from the tidy table
table NAME TABLE OUT     write one report table from the tidy table
reference NAME [...]     keep this run's GEMM/inference benchmarks as reports/reference/NAME.parquet, a
                         reference set the report draws beside later runs (e.g. after a run on a GPU)
claims TABLE [--md M] [--csv C] [--against B]   decide the papers' claims (conf/claims.yaml) from the tidy
                         table; print the verdict counts, and with --against every part whose verdict
                         differs between TABLE and B, and why (tradeoffs.report.claims)
compare RUN_A RUN_B [--ignore M ...] [--show N]   compare two runs' outputs (project directories): every
                         non-timing metric, claim verdict, figure's plotted data and table; exit 1 on any
                         difference (tradeoffs.report.compare)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tradeoffs.atomic import FileWriteError
from tradeoffs.errors import ConfigError, check_choice
from tradeoffs.kinds import kind_names

BENCH_COMMANDS = ("gemm", "qdq", "train")  # `bench gemm|qdq|train`: side-by-side ratio benchmarks
HYDRA_QUIET = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none", "hydra/hydra_logging=none")


def _overrides_first(argv: list[str]) -> list[str]:
    """`argv` with its overrides (key=value, ~key) ahead of Hydra's options, in their order: Hydra's parser takes
    the overrides as one run of positionals, so one after an option (`--cfg job key=value`) would be refused."""
    overrides = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    return [*overrides, *(a for a in argv if a not in overrides)]


def _run_hydra_app(kind: str, argv: list[str]) -> None:
    import hydra
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    from tradeoffs.paths import conf_dir, results_dir, use_project
    from tradeoffs.pipeline.config import config_hash, load_experiment, register_schemas, to_typed
    from tradeoffs.pipeline.plan import check_id_length, make_id, resolve_threads
    from tradeoffs.pipeline.runner import run_experiment

    use_project()
    if not {"-m", "--multirun"} & set(argv):  # Hydra's own errors name no valid keys: validate first
        try:
            load_experiment(kind, [a for a in argv if "=" in a and not a.startswith("-")])
        except ConfigError as error:
            sys.exit(f"error: {error}")

    def task(cfg: DictConfig) -> None:
        try:
            config = to_typed(cfg, kind)
        except ConfigError as error:
            sys.exit(f"error: {error}")
        resolve_threads(config, torch.get_num_threads())  # the count this run uses is part of its id
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra")]
        labels = [o.split("=", 1)[1] for o in overrides if "=" in o]
        experiment_id = make_id(kind, labels, config_hash(config))
        try:
            check_id_length(experiment_id, results_dir())
        except ConfigError as error:
            sys.exit(f"error: {error}")
        record = run_experiment(experiment_id, config, results_dir() / experiment_id / "result.json")
        print(f"{experiment_id}: {record.status} {record.message}".rstrip())
        for metric in record.metrics:
            labels_text = "".join(f" {k}={v}" for k, v in metric.labels.items())
            print(f"  {metric.name}{labels_text} = {metric.value:.6g} {metric.unit}".rstrip())

    register_schemas()
    sys.argv = [f"tradeoffs {kind}", *_overrides_first([*HYDRA_QUIET, *argv])]
    hydra.main(config_path=str(conf_dir()), config_name=kind, version_base=None)(task)()


def _job_config(text: str) -> dict:
    """The resolved config `job --config` got, checked to be a JSON object naming a kind."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--config: not valid JSON ({error}); give the resolved config as one JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--config: expected a JSON object (the resolved config), got {type(value).__name__}")
    if "kind" not in value:
        raise ConfigError(f"--config: no 'kind' key; valid kinds: {', '.join(kind_names())}")
    return value


def _check_report_inputs(table: Path, reference: list[Path]) -> None:
    """A figure, table or the claims need the tidy table and every reference set they are given, each a Parquet
    file with the tidy table's columns: name the missing or malformed one."""
    from tradeoffs.results import check_table_file

    check_table_file(table)
    for path in reference:
        if not path.is_file():
            kept = ", ".join(sorted(p.name for p in path.parent.glob("*.parquet"))) or "none"
            raise ConfigError(f"--reference: reference set {path} not found; sets in {path.parent}: {kept}")
        check_table_file(path, "--reference: reference set")


def _check_output(command: str, out: Path) -> None:
    """A figure's path ends in an image format matplotlib writes; a table's in .csv (its Markdown goes beside)."""
    if command == "table":
        if out.suffix != ".csv":
            raise ConfigError(f"table output {out}: expected a .csv path (the Markdown is written beside it as .md)")
        return
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if out.suffix.lstrip(".").lower() not in formats:
        raise ConfigError(
            f"figure output {out}: unknown image extension '{out.suffix}'; valid extensions: {', '.join(formats)}"
        )


def _check_threads(threads: int | None) -> None:
    """`job --threads` is a positive count (the job's allotment); left out, the config's hardware.threads or
    torch's default is used."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: must be >= 1 (the threads the job may use), got {threads}")


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
    job.add_argument(
        "--exit-zero-on-failure",
        action="store_true",
        help="exit 0 when the experiment fails (its result.json records it; the workflow passes this)",
    )
    job.add_argument("--inputs", nargs="*", type=Path, default=[], help="result files of the experiments it reads")
    clean = sub.add_parser("clean", help="remove the results of failed runs so that Snakemake reruns them")
    clean.add_argument("--status", nargs="+", required=True, help="statuses to remove, e.g. error invalid")
    clean.add_argument("--suite", default=None, help="suite name in conf/suite/ (default: conf/config.yaml)")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    clean.add_argument("--yes", action="store_true", help="confirm removing finished (ok) results")
    collect = sub.add_parser("collect", help="gather result.json files into the tidy table")
    collect.add_argument("parquet", type=Path)
    collect.add_argument("csv", type=Path)
    collect.add_argument("results", nargs="*", type=Path)
    collect.add_argument("--suite", default="", help="the suite that planned these results (a column of each row)")
    for name in ("figure", "table"):
        command = sub.add_parser(name, help=f"write one report {name}")
        command.add_argument("name")
        command.add_argument("table", type=Path, help="results/results.parquet")
        command.add_argument("out", type=Path)
        command.add_argument("--reference", nargs="*", type=Path, default=[], help="reference sets drawn beside")
    reference = sub.add_parser("reference", help="keep this run's benchmarks as a reference set of the report")
    reference.add_argument("name", help="the set's name, e.g. h100_sxm")
    reference.add_argument("--results", type=Path, default=Path("results/results.parquet"))
    reference.add_argument("--benchmarks", nargs="+", default=["gemm", "inference"], help="benchmark kinds kept")
    export = sub.add_parser("export", help="write a trained model as a Hugging Face transformers directory")
    export.add_argument("source", type=Path, help="a train run's result.json, or its checkpoint.pt")
    export.add_argument("directory", type=Path, help="the directory to write (new or empty)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty directory")
    claims = sub.add_parser("claims", help="decide the papers' claims from the tidy table (conf/claims.yaml)")
    claims.add_argument("table", type=Path, help="results/results.parquet")
    claims.add_argument("--md", type=Path, help="the claims report to write (reports/claims.md)")
    claims.add_argument("--csv", type=Path, help="one row per claim part (reports/tables/claims.csv)")
    claims.add_argument("--reference", nargs="*", type=Path, default=[], help="reference sets read beside it")
    claims.add_argument("--summary", type=Path, help="the verdict summary report.html opens on (reStructuredText)")
    claims.add_argument(
        "--against", type=Path, help="a second results table: list the parts whose verdict differs, and why"
    )
    compare = sub.add_parser("compare", help="compare two runs' outputs, timings apart; exit 1 on any difference")
    compare.add_argument("first", type=Path, help="a project directory after a run (results/, reports/)")
    compare.add_argument("second", type=Path, help="the project directory of the other run")
    compare.add_argument(
        "--ignore", nargs="+", default=[], metavar="METRIC", help="metrics left out like timings (listed in the output)"
    )
    compare.add_argument("--show", type=int, default=8, help="differences listed per section (0: all)")
    return parser


def _export_checkpoint(source: Path) -> Path:
    """The checkpoint `export` reads: the file itself, or the checkpoint.pt a train run's result.json lists."""
    if source.is_dir() or not source.exists():
        raise ConfigError(f"export: {source} is not a file; give a train run's result.json or its checkpoint.pt")
    if source.suffix != ".json":
        return source
    try:
        record = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"export: {source} is not a readable result.json ({error})") from None
    kind = str(record.get("id", "")).split("/")[0]
    if "checkpoint.pt" not in record.get("artifacts", []):
        raise ConfigError(
            f"export: {source} is a '{kind}' run that kept no checkpoint.pt; only train runs keep a model (to "
            "export a quantized one, call quantize_ and tradeoffs.models.export.export_hf from Python)"
        )
    return source.parent / "checkpoint.pt"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:2] == ["bench", "suite"]:
        from tradeoffs.pipeline.suite_timing import main as suite_timing

        suite_timing(argv[2:])
        return
    if argv[:2] == ["bench", "train"]:
        from tradeoffs.pipeline.config import load_experiment
        from tradeoffs.train.loop_speed import main as train_benchmark

        train_benchmark(lambda overrides: load_experiment("train", overrides), argv[2:])
        return
    if argv[:2] == ["bench", "gptq"]:
        from tradeoffs.quant.gptq_speed import main as gptq_benchmark

        sys.exit(gptq_benchmark(argv[2:]))
    if argv[:1] == ["fit"]:
        from tradeoffs.fit.cli import main as fit_main

        fit_main(argv[1:])
        return
    if argv[:1] == ["bench"] and argv[1:2] and argv[1] in BENCH_COMMANDS:
        from tradeoffs.bench.cli import main as bench_main

        bench_main(argv[1:])
        return
    if argv and argv[0] in kind_names():
        _run_hydra_app(argv[0], argv[1:])
        return
    args = _commands().parse_args(argv)
    try:
        if args.command == "plan":
            from tradeoffs.pipeline.plan import build_plan, default_suite

            plan = build_plan(args.suite or default_suite())
            for experiment in plan.experiments:
                print(experiment.id)
            print(f"{len(plan.experiments)} experiments in suite '{plan.suite}'", file=sys.stderr)
        elif args.command == "job":
            _check_threads(args.threads)
            from tradeoffs.paths import use_project
            from tradeoffs.pipeline.config import to_typed
            from tradeoffs.pipeline.runner import run_experiment
            from tradeoffs.results import FAILED_STATUSES

            use_project()
            config = to_typed(_job_config(args.config))
            record = run_experiment(args.id, config, args.out, job_threads=args.threads, inputs=tuple(args.inputs))
            summary = f"{args.id}: {record.status} {record.message}".rstrip()
            if record.status in FAILED_STATUSES and not args.exit_zero_on_failure:
                sys.exit(f"error: {summary}")
            print(summary)
        elif args.command == "clean":
            from tradeoffs.pipeline.clean import clean
            from tradeoffs.pipeline.plan import default_suite

            removed = clean(args.suite or default_suite(), args.status, dry_run=args.dry_run, remove_ok=args.yes)
            verb = "would remove" if args.dry_run else "removed"
            print("\n".join(f"{verb} {path}" for path in removed) or f"no runs ended {' or '.join(args.status)}")
        elif args.command == "collect":
            from tradeoffs.results import collect, write_table

            if not args.results:
                raise ConfigError("collect: no result files given (RESULT.json ...); the tidy table is kept")
            write_table(collect(args.results, args.suite), args.parquet, args.csv)
        elif args.command == "claims":
            from tradeoffs.report.claims import compare_claims, summary_line, write_claims

            _check_report_inputs(args.table, args.reference)
            verdicts = write_claims(args.table, args.md, args.csv, args.reference, summary=args.summary)
            print(summary_line(verdicts))
            written = [str(p) for p in (args.md, args.csv, args.summary) if p]
            if written or not args.against:
                print("wrote " + (", ".join(written) or "nothing (no --md, --csv, --summary)"))
            if args.against:
                print(compare_claims(args.table, args.against, args.reference))
        elif args.command == "compare":
            from tradeoffs.report.compare import compare_runs

            comparison = compare_runs(args.first, args.second, args.ignore)
            print(comparison.text(args.show or None))
            if comparison.differs:
                sys.exit(1)
        elif args.command == "export":
            from tradeoffs.models.export import export_hf
            from tradeoffs.train.checkpoint import CheckpointError, model_from_checkpoint

            try:
                model = model_from_checkpoint(_export_checkpoint(args.source))
                print(f"wrote {export_hf(model, args.directory, overwrite=args.overwrite)}")
            except (CheckpointError, ValueError) as error:
                raise ConfigError(str(error)) from None
        elif args.command == "reference":
            from tradeoffs.report.reference import export_reference

            print(f"wrote {export_reference(args.results, args.name, tuple(args.benchmarks))}")
        else:
            from tradeoffs.report import FIGURES, TABLES, write_figure, write_table_file

            check_choice(args.command, args.name, FIGURES if args.command == "figure" else TABLES)
            _check_report_inputs(args.table, args.reference)
            _check_output(args.command, args.out)
            writer = write_figure if args.command == "figure" else write_table_file
            writer(args.name, args.table, args.out, args.reference)
    except (ConfigError, FileWriteError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
