"""The pipeline: what turns conf/ into runs and records them. config composes the Hydra configs of suites and
experiments, plan turns a suite into experiments with stable ids (and caches the plan), runner runs one
experiment and writes its result, failures records the jobs that could not, clean removes the results of the
runs to retry, and suite_timing measures where a finished suite run's time went (`python -m tradeoffs bench
suite`). The library, the experiment kinds and the report import nothing from here."""
