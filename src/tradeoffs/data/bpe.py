"""Byte-level BPE with Hugging Face `tokenizers` (GPT-2 style: bytes mapped to printable characters, then
merges), trained on the train split only, for the vocabulary-size experiments.

Training is deterministic for the same text and vocabulary size (a test trains twice and compares the
JSON). Text is decoded as UTF-8 when valid, else as Latin-1 (lossless for any bytes); the choice is recorded.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def decode_text(data: bytes) -> tuple[str, str]:
    """The text of `data` and the encoding used: UTF-8 when valid, else Latin-1 (one char per byte)."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def train_bpe(text: str, vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer with at most `vocab_size` tokens (256 byte symbols plus merges)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    lines = text.splitlines(keepends=True)
    tokenizer.train_from_iterator(lines, trainer, length=len(lines))
    return tokenizer


def encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """Token ids of `text` (encoded line by line, as in training) as uint16 or int32."""
    encodings = tokenizer.encode_batch(text.splitlines(keepends=True), add_special_tokens=False)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 1 << 16 else np.int32
    ids = [np.asarray(e.ids, dtype=dtype) for e in encodings]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)
