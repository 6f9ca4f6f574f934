"""Data: the embedded corpus, verified downloads (loopback HTTP server), splits, BPE, caching and batches."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import math
import re
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tradeoffs.data import (
    DataConfig,
    DataError,
    eval_batches,
    fetch,
    load_dataset,
    random_batch,
    read_member,
    split_bytes,
    stdlib_corpus,
    stdlib_files,
)
from tradeoffs.data.bpe import decode_text, train_bpe
from tradeoffs.errors import ConfigError

TEXT = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * i}\n".encode() for i in range(2000))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A loopback HTTP server in a thread, serving a temporary directory with a text, a zip and a gz file."""
    root = tmp_path_factory.mktemp("served")
    (root / "corpus.txt").write_bytes(TEXT)
    with zipfile.ZipFile(root / "corpus.zip", "w") as archive:
        archive.writestr("corpus/train.txt", TEXT[:80_000])
        archive.writestr("corpus/valid.txt", TEXT[80_000:90_000])
        archive.writestr("corpus/test.txt", TEXT[90_000:])
    with zipfile.ZipFile(root / "single.zip", "w") as archive:
        archive.writestr("only", TEXT)
    (root / "corpus.txt.gz").write_bytes(gzip.compress(TEXT, mtime=0))  # fixed header: the same bytes every call

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


# ---------------------------------------------------------------------------------------- embedded corpus
def test_stdlib_selection_is_sorted_and_leaves_out_tests_packages_and_build_files(tmp_path):
    for name in [
        "b.py",
        "a.py",
        "pkg/__init__.py",
        "pkg/test/test_x.py",
        "test/test_y.py",
        "site-packages/numpy/core.py",
        "encodings/cp1252.py",
        "idlelib/editor.py",
        "_sysconfigdata__linux_x86_64-linux-gnu.py",
        "config-3.11-x86_64-linux-gnu/python-config.py",
        "pkg/notes.txt",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\nx = 1\n")
    assert [p.relative_to(tmp_path).as_posix() for p in stdlib_files(tmp_path)] == ["a.py", "b.py", "pkg/__init__.py"]
    assert stdlib_corpus(tmp_path) == (
        b"# a.py\n# a.py\nx = 1\n# b.py\n# b.py\nx = 1\n# pkg/__init__.py\n# pkg/__init__.py\nx = 1\n"
    )


def test_the_running_pythons_corpus_is_several_megabytes_and_deterministic():
    first, second = stdlib_corpus(), stdlib_corpus()
    assert first == second and 4_000_000 < len(first) < 30_000_000
    assert first.startswith(b"# __future__.py\n")
    assert b"\n# json/decoder.py\n" in first


def test_embedded_dataset_splits_by_fraction_records_its_hash_and_is_cached(tmp_path):
    config = DataConfig(validation_fraction=0.1, test_fraction=0.05)
    dataset = load_dataset(config, tmp_path)
    corpus = stdlib_corpus()
    assert dataset.sha256 == sha(corpus) == dataset.provenance["source_sha256"]
    assert dataset.provenance["python_version"]
    sizes = {split: len(tokens) for split, tokens in dataset.splits.items()}
    assert sizes["validation"] == int(len(corpus) * 0.1) and sizes["test"] == int(len(corpus) * 0.05)
    assert b"".join(dataset.splits[s].tobytes() for s in ("train", "validation", "test")) == corpus
    assert dataset.vocab_size == 256 and dataset.splits["train"].dtype == np.uint8
    assert dataset.bits_per_byte(math.log(2)) == pytest.approx(1.0)
    stamp = (dataset.directory / "meta.json").stat().st_mtime_ns
    again = load_dataset(config, tmp_path)
    assert again.directory == dataset.directory and (again.directory / "meta.json").stat().st_mtime_ns == stamp
    other = load_dataset(DataConfig(validation_fraction=0.2, test_fraction=0.05), tmp_path)
    assert other.directory != dataset.directory
    with pytest.raises(DataError, match=r"not the pinned data\.sha256"):
        load_dataset(DataConfig(sha256="0" * 64), tmp_path)


def test_split_bytes_is_contiguous_and_complete():
    parts = split_bytes(bytes(range(200)) * 5, 0.1, 0.2)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [700, 100, 200]
    assert parts["train"] + parts["validation"] + parts["test"] == bytes(range(200)) * 5


# ---------------------------------------------------------------------------------------------- downloads
def test_fetch_downloads_verifies_and_then_uses_the_cache(server, tmp_path):
    base, root = server
    path = fetch(f"{base}/corpus.txt", sha(TEXT), tmp_path)
    assert path == tmp_path / "corpus.txt" and path.read_bytes() == TEXT
    (root / "corpus.txt").rename(root / "moved.txt")  # the server no longer has it: the cache must answer
    try:
        assert fetch(f"{base}/corpus.txt", sha(TEXT), tmp_path) == path
    finally:
        (root / "moved.txt").rename(root / "corpus.txt")
    assert not list(tmp_path.glob(".*.part"))


def test_a_wrong_checksum_is_reported_and_the_file_kept_aside(server, tmp_path):
    base, _ = server
    wrong = "ab" * 32
    with pytest.raises(DataError) as caught:
        fetch(f"{base}/corpus.txt", wrong, tmp_path)
    message = str(caught.value)
    assert f"expected sha256 {wrong}" in message and f"got {sha(TEXT)}" in message
    aside = tmp_path / f"corpus.txt.rejected-{sha(TEXT)[:8]}"
    assert aside.read_bytes() == TEXT and not (tmp_path / "corpus.txt").exists()
    assert str(aside) in message


def test_an_unreachable_url_names_the_url_and_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/enwik8.zip"
    with pytest.raises(DataError) as caught:
        fetch(url, "cd" * 32, tmp_path, timeout=5)
    message = str(caught.value)
    assert url in message and "offline" in message and str(tmp_path / "enwik8.zip") in message
    assert not list(tmp_path.iterdir())


def test_a_missing_file_on_the_server_is_a_clear_error(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match=r"could not download .*/nothing\.txt \(HTTP 404 File not found\)"):
        fetch(f"{base}/nothing.txt", "cd" * 32, tmp_path)


def test_a_local_file_url_works(tmp_path):
    source = tmp_path / "local.txt"
    source.write_bytes(TEXT)
    assert fetch(source.as_uri(), sha(TEXT), tmp_path / "cache").read_bytes() == TEXT


def test_archives_zip_member_single_file_and_gz(server, tmp_path):
    _, root = server
    assert read_member(root / "single.zip") == TEXT
    assert read_member(root / "corpus.zip", "corpus/valid.txt") == TEXT[80_000:90_000]
    assert read_member(root / "corpus.txt.gz", max_bytes=100) == TEXT[:100]
    with pytest.raises(DataError, match=r"holds 3 files; set data\.member to one of: corpus/train\.txt"):
        read_member(root / "corpus.zip")
    with pytest.raises(DataError, match="no member 'x'"):
        read_member(root / "corpus.zip", "x")


def test_url_datasets_from_the_loopback_server(server, tmp_path):
    base, root = server
    zipped = sha((root / "corpus.zip").read_bytes())
    config = DataConfig(
        name="loop",
        source="url",
        url=f"{base}/corpus.zip",
        sha256=zipped,
        split_members={"train": "corpus/train.txt", "validation": "corpus/valid.txt", "test": "corpus/test.txt"},
    )
    dataset = load_dataset(config, tmp_path)
    assert dataset.splits["validation"].tobytes() == TEXT[80_000:90_000]
    assert dataset.provenance["url"] == config.url and dataset.sha256 == zipped
    gz = load_dataset(
        DataConfig(name="gz", source="url", url=f"{base}/corpus.txt.gz", sha256=sha(gzip.compress(TEXT, mtime=0))),
        tmp_path,
    )
    assert b"".join(gz.splits[s].tobytes() for s in ("train", "validation", "test")) == TEXT


def test_an_offline_url_dataset_fails_clearly_before_any_work(tmp_path):
    config = DataConfig(name="x", source="url", url="http://127.0.0.1:9/x.txt", sha256="ef" * 32)
    with pytest.raises(DataError, match=r"could not download http://127\.0\.0\.1:9/x\.txt"):
        load_dataset(config, tmp_path)
    assert not list(tmp_path.glob("prepared/x-*"))


# ---------------------------------------------------------------------------------------------------- BPE
def test_bpe_is_trained_on_the_train_split_only_deterministic_and_lossless(tmp_path):
    config = DataConfig(tokenizer="bpe", vocab_size=600, max_bytes=400_000)
    first = load_dataset(config, tmp_path / "a")
    second = load_dataset(config, tmp_path / "b")
    assert (first.directory / "tokenizer.json").read_bytes() == (second.directory / "tokenizer.json").read_bytes()
    for split in ("train", "validation", "test"):
        assert np.array_equal(first.splits[split], second.splits[split])
    train_text, _ = decode_text(stdlib_corpus()[: int(400_000 * 0.9)])
    assert json.loads(train_bpe(train_text, 600).to_str()) == json.loads(first.tokenizer.to_str())
    validation = split_bytes(stdlib_corpus()[:400_000], 0.05, 0.05)["validation"]
    assert first.tokenizer.decode(first.splits["validation"].tolist()).encode() == validation
    assert first.vocab_size == 600 and first.splits["train"].dtype == np.uint16
    assert int(first.splits["train"].max()) < 600
    assert 1.5 < first.bytes_per_token("validation") < 6
    assert first.meta["splits"]["validation"]["bytes"] == len(validation)


# ------------------------------------------------------------------------------------------------ batches
def test_random_batches_are_seeded_shifted_and_in_range():
    tokens = np.arange(1000, dtype=np.uint16) % 251
    x, y = random_batch(tokens, 8, 32, torch.Generator().manual_seed(3))
    x2, y2 = random_batch(tokens, 8, 32, torch.Generator().manual_seed(3))
    x3, _ = random_batch(tokens, 8, 32, torch.Generator().manual_seed(4))
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert x.dtype == torch.int64 and x.shape == y.shape == (8, 32)
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row, target in zip(x, y, strict=True):
        start = int(np.flatnonzero(tokens == row[0].item())[0])
        assert np.array_equal(tokens[start : start + 33], np.r_[row.numpy(), target[-1].item()])


def test_eval_batches_are_disjoint_consecutive_windows():
    tokens = np.arange(1003, dtype=np.int32)
    batches = list(eval_batches(tokens, 4, 100))
    xs, ys = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert torch.equal(xs.flatten(), torch.arange(1000)) and torch.equal(ys.flatten(), torch.arange(1, 1001))
    assert sum(len(b[0]) for b in eval_batches(tokens, 4, 100, max_windows=5)) == 5
    with pytest.raises(ValueError, match=re.escape("fewer than context_length + 1 = 1004")):
        next(eval_batches(tokens, 4, 1003))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(tokenizer="bpe"), "(256, 65536] with tokenizer=bpe"),
        (dict(vocab_size=512), "must be 256 with tokenizer=bytes"),
        (dict(tokenizer="wordpiece"), "bytes, bpe"),
        (dict(source="url", url="http://x/y"), "64-hex-digit data.sha256"),
        (dict(sha256="XYZ"), "64 lowercase hex digits"),
        (dict(split_members={"dev": "a"}), "valid choices: train, validation, test"),
        (dict(validation_fraction=0.6, test_fraction=0.5), "sum below 1"),
        (dict(test_fraction=-0.1), ">= 0"),
    ],
)
def test_bad_data_config_is_rejected(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        DataConfig(**overrides)


def test_every_downloadable_corpus_pins_a_url_and_a_checksum():
    from omegaconf import OmegaConf

    from conftest import ROOT

    for name in ("tinyshakespeare", "enwik8", "wikitext103", "tinystories"):
        raw = OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml")
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), raw))
        assert config.source == "url" and config.url.startswith("https://") and len(config.sha256) == 64
        assert Path(config.url).name  # names the cached file
