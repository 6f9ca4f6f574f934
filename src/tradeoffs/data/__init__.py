"""Corpora for training: the embedded standard-library corpus and verified downloads (sources.py),
deterministic splits and byte or BPE tokens cached under default_cache_dir() (dataset.py, bpe.py), and seeded
batches (batches.py). See docs/data.md."""

from __future__ import annotations

from tradeoffs.data.batches import eval_batches, random_batch
from tradeoffs.data.dataset import SPLITS, DataConfig, Dataset, default_cache_dir, load_dataset, split_bytes
from tradeoffs.data.sources import DataError, fetch, read_member, sha256_file, stdlib_corpus, stdlib_files

__all__ = [
    "SPLITS",
    "DataConfig",
    "DataError",
    "Dataset",
    "default_cache_dir",
    "eval_batches",
    "fetch",
    "load_dataset",
    "random_batch",
    "read_member",
    "sha256_file",
    "split_bytes",
    "stdlib_corpus",
    "stdlib_files",
]
