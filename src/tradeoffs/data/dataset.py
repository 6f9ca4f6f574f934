"""A corpus prepared for training: split, tokenized, cached as flat token files, with its provenance.

`load_dataset(config)` obtains the corpus bytes (embedded or a verified download), splits them, tokenizes
(bytes, or a BPE trained on the train split only) and writes `<split>.bin` plus `meta.json` under
`<cache>/prepared/<name>-<key>/` (the cache: default_cache_dir(), the project's data/cache/ in the pipeline),
where the key hashes the source's sha256 and every setting that changes the tokens. Later calls memory-map
those files. Preparation writes to a temporary directory that is renamed into place, so concurrent jobs never
see a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from tradeoffs.data.batches import eval_batches, random_batch
from tradeoffs.data.bpe import decode_text, encode, train_bpe
from tradeoffs.data.sources import DataError, fetch, read_member, stdlib_corpus
from tradeoffs.errors import ConfigError, check_choice, check_positive
from tradeoffs.identity import descriptive


@dataclass
class DataConfig:
    """A text corpus (conf/data/): embedded (offline) or downloaded by URL with a checksum (tradeoffs.data).

    The corpus is one byte stream split contiguously into train | validation | test by the fractions, unless
    `split_members` names an archive's own split files. The sha256 pins the downloaded file, so the URL (a
    mirror) does not enter the experiment hash; an embedded corpus's hash is computed and recorded at run time.
    """

    name: str = descriptive("stdlib")
    source: str = "embedded"
    url: str = descriptive("")
    sha256: str = ""  # of the downloaded file (url); optional pin for an embedded corpus
    member: str = ""  # the file to read inside a .zip archive ("" = its only file)
    split_members: dict[str, str] = field(default_factory=dict)  # train/validation/test -> archive member
    max_bytes: int = 0  # read at most this many bytes of the corpus (of each member with split_members); 0 = all
    tokenizer: str = "bytes"
    vocab_size: int = 256
    validation_fraction: float = 0.05
    test_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_choice("data.source", self.source, ("embedded", "url"))
        check_choice("data.tokenizer", self.tokenizer, ("bytes", "bpe"))
        if self.source == "url" and not (self.url and re.fullmatch(r"[0-9a-f]{64}", self.sha256)):
            raise ConfigError("data: source=url needs data.url and a 64-hex-digit data.sha256")
        if self.sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ConfigError(f"data.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.tokenizer == "bytes" and self.vocab_size != 256:
            raise ConfigError(f"data.vocab_size must be 256 with tokenizer=bytes, got {self.vocab_size}")
        if self.tokenizer == "bpe" and not 256 < self.vocab_size <= 65536:
            raise ConfigError(f"data.vocab_size must be in (256, 65536] with tokenizer=bpe, got {self.vocab_size}")
        check_positive("data.max_bytes", self.max_bytes, allow_zero=True)
        for split in self.split_members:
            check_choice("data.split_members key", split, ("train", "validation", "test"))
        if self.split_members and "train" not in self.split_members:
            raise ConfigError("data.split_members needs a 'train' member")
        if not (self.validation_fraction >= 0 and self.test_fraction >= 0) or not (
            self.validation_fraction + self.test_fraction < 1
        ):
            raise ConfigError("data.validation_fraction and data.test_fraction must be >= 0 with a sum below 1")


SPLITS = ("train", "validation", "test")
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """$TRADEOFFS_DATA_CACHE, else $XDG_CACHE_HOME/tradeoffs/data (~/.cache/tradeoffs/data). The pipeline sets
    $TRADEOFFS_DATA_CACHE to the project's data/cache/ (tradeoffs.paths.use_project)."""
    if cache := os.environ.get("TRADEOFFS_DATA_CACHE"):
        return Path(cache)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tradeoffs" / "data"


@dataclass
class Dataset:
    """Token arrays of the train/validation/test splits (memory-mapped) and what they came from."""

    name: str
    splits: dict[str, np.ndarray]
    vocab_size: int
    meta: dict[str, Any]
    directory: Path
    tokenizer: Tokenizer | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        """sha256 of the corpus source: the downloaded file, or the embedded corpus's bytes."""
        return self.meta["source_sha256"]

    @property
    def provenance(self) -> dict[str, Any]:
        """What a result should record about its data: name, source hash, URL, tokenizer, split sizes..."""
        return {key: value for key, value in self.meta.items() if key != "format_version"}

    def batch(
        self, split: str, batch_size: int, context_length: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random (x, y) windows from a split; see tradeoffs.data.batches.random_batch."""
        return random_batch(self.splits[split], batch_size, context_length, generator)

    def eval_batches(self, split: str, batch_size: int, context_length: int, max_windows: int | None = None):
        """Disjoint sequential (x, y) windows of a split; see tradeoffs.data.batches.eval_batches."""
        return eval_batches(self.splits[split], batch_size, context_length, max_windows)

    def bytes_per_token(self, split: str) -> float:
        """Corpus bytes per token in a split (1 for the byte tokenizer)."""
        info = self.meta["splits"][split]
        return info["bytes"] / info["tokens"] if info["tokens"] else 1.0

    def bits_per_byte(self, loss_nats: float, split: str = "validation") -> float:
        """Cross-entropy per token in nats -> bits per byte of the corpus."""
        return loss_nats / math.log(2) / self.bytes_per_token(split)


def _source_bytes(config: DataConfig, cache_dir: Path) -> tuple[dict[str, bytes] | bytes, str, dict[str, Any]]:
    """The corpus (one stream, or one per split with split_members), its source sha256 and source facts."""
    if config.source == "embedded":
        data = stdlib_corpus()
        digest = hashlib.sha256(data).hexdigest()
        if config.sha256 and digest != config.sha256:
            raise DataError(
                f"embedded corpus sha256 is {digest}, not the pinned data.sha256 {config.sha256}: the standard "
                f"library of this Python ({platform.python_version()}) differs; unset data.sha256 to accept it"
            )
        facts = {"python_version": platform.python_version(), "python_implementation": platform.python_implementation()}
        return data[: config.max_bytes or None], digest, facts
    path = fetch(config.url, config.sha256, cache_dir / "downloads")
    facts = {"url": config.url, "file": path.name}
    if config.split_members:
        parts = {split: read_member(path, member, config.max_bytes) for split, member in config.split_members.items()}
        return parts, config.sha256, facts
    return read_member(path, config.member, config.max_bytes), config.sha256, facts


def split_bytes(data: bytes, validation_fraction: float, test_fraction: float) -> dict[str, bytes]:
    """Contiguous split: train = the first 1 - v - t of the bytes, then validation, then test."""
    n = len(data)
    n_validation, n_test = int(n * validation_fraction), int(n * test_fraction)
    n_train = n - n_validation - n_test
    return {
        "train": data[:n_train],
        "validation": data[n_train : n_train + n_validation],
        "test": data[n_train + n_validation :],
    }


def _cache_key(config: DataConfig, source_sha256: str) -> str:
    settings = {
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha256,
        "member": config.member,
        "split_members": dict(sorted(config.split_members.items())),
        "max_bytes": config.max_bytes,
        "tokenizer": config.tokenizer,
        "vocab_size": config.vocab_size,
        "fractions": [config.validation_fraction, config.test_fraction],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _prepare(config: DataConfig, raw: dict[str, bytes] | bytes, digest: str, facts: dict, directory: Path) -> None:
    """Split, tokenize and write <split>.bin, tokenizer.json (BPE) and meta.json into `directory`."""
    parts = raw if isinstance(raw, dict) else split_bytes(raw, config.validation_fraction, config.test_fraction)
    parts = {split: parts.get(split, b"") for split in SPLITS}
    meta: dict[str, Any] = {"name": config.name, "source": config.source, "source_sha256": digest, **facts}
    if config.tokenizer == "bpe":
        texts = {split: decode_text(data) for split, data in parts.items()}
        tokenizer = train_bpe(texts["train"][0], config.vocab_size)
        tokenizer.save(str(directory / "tokenizer.json"))
        tokens = {split: encode(tokenizer, text) for split, (text, _) in texts.items()}
        vocab_size = tokenizer.get_vocab_size()
        meta["text_encoding"] = {split: encoding for split, (_, encoding) in texts.items()}
        meta["tokenizer_sha256"] = hashlib.sha256((directory / "tokenizer.json").read_bytes()).hexdigest()
    else:
        tokens = {split: np.frombuffer(data, dtype=np.uint8) for split, data in parts.items()}
        vocab_size = 256
    meta.update(
        tokenizer=config.tokenizer,
        vocab_size=vocab_size,
        dtype=np.dtype(tokens["train"].dtype).name,
        splits={
            split: {
                "bytes": len(parts[split]),
                "tokens": len(tokens[split]),
                "sha256": hashlib.sha256(parts[split]).hexdigest(),
            }
            for split in SPLITS
        },
        format_version=FORMAT_VERSION,
    )
    for split in SPLITS:
        tokens[split].tofile(directory / f"{split}.bin")
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def _open(directory: Path) -> Dataset:
    meta = json.loads((directory / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for split in SPLITS:
        path = directory / f"{split}.bin"
        splits[split] = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)
    tokenizer_path = directory / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tokenizer_path)) if tokenizer_path.is_file() else None
    return Dataset(meta["name"], splits, meta["vocab_size"], meta, directory, tokenizer)


def load_dataset(config: DataConfig, cache_dir: Path | None = None) -> Dataset:
    """The prepared dataset of a DataConfig, from the cache or prepared now (see the module docstring)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    raw = None
    if config.source == "url":  # the expected hash names the cache, so a prepared corpus needs no download
        digest = config.sha256
    else:
        raw, digest, facts = _source_bytes(config, cache_dir)
    directory = cache_dir / "prepared" / f"{config.name}-{_cache_key(config, digest)}"
    if (directory / "meta.json").is_file():
        return _open(directory)
    if raw is None:
        raw, digest, facts = _source_bytes(config, cache_dir)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        _prepare(config, raw, digest, facts, staging)
        os.rename(staging, directory)
    except OSError:
        if not (directory / "meta.json").is_file():  # not a concurrent preparation that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _open(directory)
