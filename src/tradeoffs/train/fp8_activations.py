"""Activations saved for backward stored in a lower precision (COAT, 2025), through
`torch.autograd.graph.saved_tensors_hooks`.

While `store_activations(model, storage)` is active, the activations a forward saves for backward are packed
into real lower-precision storage and unpacked back to their own dtype when the backward needs them. A saved
tensor is an activation when its storage is that of a module's input or output (recorded by forward hooks:
the tensors that flow between layers, including the query/key/value views of the attention's projection):
- `bf16`: a torch.bfloat16 copy (2 bytes per element), the baseline of BF16 training;
- `fp8`: a torch.float8_e4m3fn tensor (1 byte per element) and its FP32 scales: one scale per tensor for the
  inputs of Linear layers (matched by storage, offset and size whatever the saved view's shape), one per
  group of `group_size` consecutive elements for every other activation, COAT's mixed granularity.
  Scale = amax / 448 (E4M3's largest value), values clamped to +-448 before the cast (never relying on the
  cast's overflow behaviour), an all-zero group scaled by 1;
- `fp32`: kept as they are (the reference; still counted).
Every other saved tensor (normalisation statistics, the attention's log-sum-exp, the loss's log-probabilities,
indices and masks: what kernels keep in FP32 in BF16 training too) is kept as it is in every storage, as are
parameters and views of them (held anyway, not counted). A tensor saved twice while alive (the same storage,
offset, shape and strides) is packed once. `ActivationStore` counts the stored bytes by role exactly (codes,
scales, copies and kept tensors' storages).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tradeoffs.bench.saved import storage_key
from tradeoffs.data import load_dataset
from tradeoffs.errors import Diverged, Unsupported
from tradeoffs.models import build_model
from tradeoffs.train.config import TrainConfig
from tradeoffs.train.loop import evaluate
from tradeoffs.train.optim import build_optimizer, build_scheduler, quantize_optimizer_states

STORAGES = ("fp32", "bf16", "fp8")
ROLES = ("linear_input", "activation", "other")
E4M3_MAX = 448.0


def require_float8() -> torch.dtype:
    """torch.float8_e4m3fn, or Unsupported naming the torch version that lacks it."""
    dtype = getattr(torch, "float8_e4m3fn", None)
    if dtype is None:
        raise Unsupported(
            f"torch {torch.__version__} has no torch.float8_e4m3fn: FP8 activation storage needs torch >= 2.1"
        )
    return dtype


@dataclass
class Packed:
    """A saved tensor in its stored form: FP8 codes with their scales, or a cast copy, or the tensor itself."""

    data: Tensor
    scales: Tensor | None = None
    shape: tuple[int, ...] = ()
    dtype: torch.dtype = torch.float32
    group_size: int = 0  # 0: one scale for the whole tensor

    @property
    def bytes(self) -> int:
        """Bytes of the stored codes (or copy) and scales."""
        total = self.data.untyped_storage().nbytes()
        return total + (self.scales.untyped_storage().nbytes() if self.scales is not None else 0)


def quantize_fp8(tensor: Tensor, group_size: int = 0) -> Packed:
    """`tensor` as float8_e4m3fn codes and FP32 scales (amax / 448): per tensor when group_size is 0, else per
    group of `group_size` consecutive elements of the flattened tensor (the last group zero-padded)."""
    dtype = require_float8()
    flat = tensor.detach().float().reshape(-1)
    if group_size:
        flat = nn.functional.pad(flat, (0, (-flat.numel()) % group_size)).reshape(-1, group_size)
        amax = flat.abs().amax(dim=1, keepdim=True)
    else:
        amax = flat.abs().amax().reshape(1)
    scales = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    codes = (flat / scales).clamp(-E4M3_MAX, E4M3_MAX).to(dtype)
    return Packed(codes, scales, tuple(tensor.shape), tensor.dtype, group_size)


def dequantize_fp8(packed: Packed) -> Tensor:
    """The tensor an FP8 `Packed` stands for, in its original dtype and shape."""
    values = (packed.data.float() * packed.scales).reshape(-1)
    return values[: math.prod(packed.shape)].reshape(packed.shape).to(packed.dtype)


@dataclass
class ActivationStore:
    """What one or more forwards stored for backward: bytes by role (linear inputs, other activations, kept
    non-float tensors) and the number of tensors packed."""

    storage: str
    group_size: int = 128
    bytes_by_role: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    tensors: int = 0

    @property
    def bytes(self) -> int:
        """Every stored byte: activations and the tensors kept as they are."""
        return sum(self.bytes_by_role.values())

    @property
    def activation_bytes(self) -> int:
        """Bytes of the activations (Linear inputs and the other module inputs and outputs) as stored."""
        return self.bytes_by_role["linear_input"] + self.bytes_by_role["activation"]


def _data_key(tensor: Tensor) -> tuple:
    """The elements a tensor covers, whatever its view's shape (a Linear saves its input reshaped to 2-D)."""
    return (*storage_key(tensor), tensor.storage_offset(), tensor.numel())


def _view_key(tensor: Tensor) -> tuple:
    return (*storage_key(tensor), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)


@contextlib.contextmanager
def store_activations(model: nn.Module, storage: str = "fp8", group_size: int = 128) -> Iterator[ActivationStore]:
    """Within the block, the activations `model`'s forwards save for backward are stored in `storage` (one of
    STORAGES; fp32 keeps them as they are but still counts them) and restored for the backward."""
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r}; valid choices: {', '.join(STORAGES)}")
    if storage == "fp8":
        require_float8()
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    store = ActivationStore(storage, group_size)
    parameters = {storage_key(p) for p in model.parameters()}
    linear_inputs: dict[tuple, weakref.ref] = {}
    activations: dict[tuple, weakref.ref] = {}
    packed_views: dict[tuple, tuple[weakref.ref, Packed]] = {}
    kept_storages: set[tuple] = set()  # a tensor kept as it is holds its whole storage, counted once

    def remember_input(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor):
            linear_inputs[_data_key(args[0])] = weakref.ref(args[0])

    def remember_activations(module: nn.Module, args: tuple, output: object) -> None:
        outputs = output if isinstance(output, tuple) else (output,)
        for tensor in (*args, *outputs):
            if isinstance(tensor, Tensor) and tensor.is_floating_point():
                activations[storage_key(tensor)] = weakref.ref(tensor)

    def alive(found: weakref.ref | None) -> bool:  # a live tensor's address cannot hold another tensor
        return found is not None and found() is not None

    handles = [m.register_forward_pre_hook(remember_input) for m in model.modules() if isinstance(m, nn.Linear)]
    handles += [m.register_forward_hook(remember_activations) for m in model.modules()]

    def pack(tensor: Tensor) -> Tensor | Packed:
        if storage_key(tensor) in parameters:
            return tensor
        key = _view_key(tensor)
        seen = packed_views.get(key)
        if seen is not None and alive(seen[0]):
            return seen[1]
        if alive(linear_inputs.get(_data_key(tensor))):
            role = "linear_input"
        elif tensor.is_floating_point() and alive(activations.get(storage_key(tensor))):
            role = "activation"
        else:
            role = "other"
        if role == "other" or storage == "fp32":
            packed = Packed(tensor, shape=tuple(tensor.shape), dtype=tensor.dtype)
        elif storage == "fp8":
            packed = quantize_fp8(tensor, 0 if role == "linear_input" else group_size)
        else:
            packed = Packed(
                tensor.detach().to(torch.bfloat16, copy=True), shape=tuple(tensor.shape), dtype=tensor.dtype
            )
        packed_views[key] = (weakref.ref(tensor), packed)
        if packed.data is not tensor:
            store.bytes_by_role[role] += packed.bytes
        elif storage_key(tensor) not in kept_storages:
            kept_storages.add(storage_key(tensor))
            store.bytes_by_role[role] += packed.bytes
        store.tensors += 1
        return packed

    def unpack(packed: Tensor | Packed) -> Tensor:
        if isinstance(packed, Tensor):
            return packed
        if packed.scales is not None:
            return dequantize_fp8(packed)
        return packed.data.to(packed.dtype)

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield store
    finally:
        packed_views.clear()
        linear_inputs.clear()
        activations.clear()
        kept_storages.clear()
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------------------------------------------ training
# Model-state bytes per parameter of BF16 mixed-precision training with Adam (ZeRO's accounting): an FP32
# master copy, BF16 weights and BF16 gradients; Adam's two moments come on top (8 B in FP32, or as stored).
MASTER_BYTES, WEIGHT_BYTES, GRADIENT_BYTES = 4, 2, 2


def model_state_bytes(parameters: int, optimizer_state_bytes_per_parameter: float) -> float:
    """Bytes of model states: parameters x (FP32 master + BF16 weights + BF16 gradients + optimizer states)."""
    return parameters * (MASTER_BYTES + WEIGHT_BYTES + GRADIENT_BYTES + optimizer_state_bytes_per_parameter)


@dataclass
class StorageRun:
    """A short training run with activations stored in `storage`: losses, saved bytes of one step, tokens."""

    storage: str
    train_loss: list[tuple[int, float]] = field(default_factory=list)
    final_val_loss: float = math.nan
    activation_bytes: int = 0  # activations stored for backward by one training step (the first), exact
    saved_bytes: int = 0  # everything stored for backward by that step (activations and kept tensors)
    bytes_by_role: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    tokens: int = 0


def train_with_storage(config: TrainConfig, storage: str, group_size: int = 128, dataset=None) -> StorageRun:
    """Train `config.model` (FP32 compute, the config's AdamW, schedule, clipping and data; Adam's moments stored
    in the recipe's optimizer_state_format, e.g. COAT's FP8 states) for config.steps steps, every forward's
    saved activations stored in `storage`; the final validation loss as
    tradeoffs.train.loop.evaluate measures it. The same seed gives the same initialisation and batches whatever
    the storage, so runs differing only in storage are paired."""
    device = "cuda" if config.hardware.device == "cuda" else "cpu"
    dataset = dataset or load_dataset(config.data)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device).train()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    batches = torch.Generator().manual_seed(config.seed)
    run = StorageRun(storage, parameters=sum(p.numel() for p in model.parameters()))
    for step in range(config.steps):
        x, y = dataset.batch("train", config.batch_size, config.model.context_length, batches)
        with store_activations(model, storage, group_size) as store:
            _, loss = model(x.to(device), y.to(device))
        if step == 0:
            run.activation_bytes, run.saved_bytes = store.activation_bytes, store.bytes
            run.bytes_by_role = dict(store.bytes_by_role)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        quantize_optimizer_states(optimizer, config.recipe)
        scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            raise Diverged(f"training with {storage} activation storage diverged: loss is {value}", step)
        if step % config.log_interval == 0 or step + 1 == config.steps:
            run.train_loss.append((step, value))
        run.tokens += y.numel()
    run.final_val_loss = evaluate(model, dataset, config, device)
    return run
