"""Checkpoints that cannot run code when read, and that are verified before they are used.

A checkpoint is one safetensors file: every tensor of the state (weights, optimizer moments, RNG states as
uint8 tensors) is a safetensors tensor; everything else (counters, loss curves, step times, optimizer
hyper-parameters, scheduler and scaler states, the config) is JSON in the file's metadata, with tuples and
non-string dictionary keys (an optimizer's parameter indices) marked so they come back as they were. A
sha256 over the JSON and every tensor (name, dtype, shape, bytes) is stored beside them and checked on load.
Nothing is unpickled, so a crafted file (including an old pickle checkpoint.pt) is refused, never executed.

`load_checkpoint` raises CheckpointError naming the file when it is truncated, altered or not a checkpoint of
this format. The caller decides what follows; the training loop stops the run with that error and leaves
the file as it is (see docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from tradeoffs.atomic import write_bytes_atomic

FORMAT = "tradeoffs-checkpoint/1"
_TENSOR, _TUPLE, _ITEMS = "$tensor", "$tuple", "$items"  # markers of the JSON encoding
_SCALARS = (type(None), bool, int, float, str)


class CheckpointError(RuntimeError):
    """A checkpoint file is truncated, altered or not a checkpoint of this format; the message names it."""


def _encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """`value` as JSON, its tensors moved into `tensors` under their path in the structure."""
    if isinstance(value, torch.Tensor):
        if name in tensors:
            raise ValueError(f"checkpoint: two tensors at {name!r}")
        tensors[name] = value
        return {_TENSOR: name}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item, f"{name}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{name}/{i}", tensors) for i, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(key, (str, int)) for key in value):
            raise TypeError(f"checkpoint: keys of {name!r} must be strings or integers")
        encoded = {key: _encode(item, f"{name}/{key}", tensors) for key, item in value.items()}
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return encoded
        return {_ITEMS: [[key, item] for key, item in encoded.items()]}
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"checkpoint: {name!r} is a {type(value).__name__}; only tensors, containers and JSON scalars")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {_TENSOR}:
        return tensors[value[_TENSOR]]
    if value.keys() == {_TUPLE}:
        return tuple(_decode(item, tensors) for item in value[_TUPLE])
    if value.keys() == {_ITEMS}:
        return {key: _decode(item, tensors) for key, item in value[_ITEMS]}
    return {key: _decode(item, tensors) for key, item in value.items()}


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and each in a storage of its own (safetensors refuses shared ones, e.g. tied weights)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _digest(state: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the JSON state and of every tensor's name, dtype, shape and bytes, each length-prefixed."""
    digest = hashlib.sha256()

    def part(data: bytes | memoryview) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    part(state.encode())
    for name in sorted(tensors):
        tensor = tensors[name]
        part(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        part(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def save_checkpoint(path: Path | str, state: Any) -> None:
    """Write `state` (nested dicts, lists and tuples of tensors and JSON scalars: state_dicts, RNG states,
    counters, curves) to `path` as a checksummed safetensors file, atomically (tradeoffs.atomic: a full disk
    raises FileWriteError "no space left on <path>" and leaves the previous checkpoint)."""
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(_encode(state, "", tensors), separators=(",", ":"), allow_nan=True)
    tensors = _storable(tensors)
    metadata = {"format": FORMAT, "state": text, "sha256": _digest(text, tensors)}
    write_bytes_atomic(path, safetensors_bytes(tensors, metadata=metadata))


def load_checkpoint(path: Path | str) -> Any:
    """The state saved at `path` (tensors on the CPU), after verifying its checksum; CheckpointError naming
    the file if it is truncated, altered or not a checkpoint of this format. Never runs code from the file."""
    path = Path(path)
    remedy = "delete it to train from scratch"
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a {FORMAT} safetensors file ({error}); {remedy}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file (format {metadata.get('format')!r}); {remedy}")
    text = metadata.get("state", "")
    if _digest(text, tensors) != metadata.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match its sha256 checksum; {remedy}")
    try:
        return _decode(json.loads(text), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} holds a malformed state ({error!r}); {remedy}") from None


def model_from_checkpoint(path: Path | str) -> torch.nn.Module:
    """The model a training checkpoint holds: its config's architecture with the saved weights, in eval mode on
    the CPU (what `python -m tradeoffs export` writes out). CheckpointError when the file is not a training
    checkpoint."""
    from tradeoffs.identity import from_plain
    from tradeoffs.models import ModelConfig, build_model

    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"config", "model"} <= state.keys():
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (it holds no config and model)")
    model = build_model(from_plain(ModelConfig, state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval()
