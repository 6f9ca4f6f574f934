"""A Hugging Face causal LM from a local directory, behind the interface of tradeoffs.models.GPT:
forward(idx, targets) -> (fp32 logits, cross-entropy in nats), prefill/decode_step/generate, `lm_head`,
`vocab_size`, `context_length`, and parameter counts by the same convention (module_parameter_count).

Only local files are read (local_files_only=True): the project never downloads weights. Note that some
architectures (GPT-2) use transformers' Conv1D rather than torch.nn.Linear for their projections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tradeoffs.errors import ConfigError
from tradeoffs.models.gpt import greedy_generate, language_model_loss


class HFCausalLM(nn.Module):
    """Wraps a transformers causal LM (`self.model`) so training and benchmarks can treat it like GPT."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.config
        self.vocab_size = config.vocab_size
        self.context_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0)

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (batch, steps, vocab) in fp32 and, with `targets` (the next tokens, same shape as idx),
        the mean cross-entropy in nats, computed here exactly as GPT does (no shift inside)."""
        logits = self.model(input_ids=idx, use_cache=False).logits.float()
        return logits, None if targets is None else language_model_loss(logits, targets)

    @torch.no_grad()
    def prefill(self, idx: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        """Run the prompt; fp32 logits of its last position and transformers' key/value cache."""
        out = self.model(input_ids=idx, past_key_values=cache, use_cache=True)
        return out.logits[:, -1].float(), out.past_key_values

    @torch.no_grad()
    def decode_step(self, token: Tensor, cache: Any) -> tuple[Tensor, Any]:
        """One new token per sequence (batch,) after the cached positions; fp32 logits (batch, vocab)."""
        out = self.model(input_ids=token.reshape(-1, 1), past_key_values=cache, use_cache=True)
        return out.logits[:, -1].float(), out.past_key_values

    def generate(self, idx: Tensor, max_new_tokens: int) -> Tensor:
        """Greedy decoding with the cache: the prompt followed by `max_new_tokens` argmax tokens."""
        return greedy_generate(self, idx, max_new_tokens)


def load_hf_model(path: str | Path, dtype: torch.dtype = torch.float32) -> HFCausalLM:
    """Load a causal LM saved with save_pretrained from the local directory `path` (never the hub)."""
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ConfigError(
            f"model.path={str(path)!r} is not a local Hugging Face model directory (no config.json); "
            "save one with model.save_pretrained(path) or download it yourself, then point model.path at it"
        )
    from transformers import AutoModelForCausalLM  # imported lazily: transformers is slow to import

    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype)
    return HFCausalLM(model.eval())
