"""ZeRO's model-state partitioning over data-parallel processes, and its memory formula.

The stages (Rajbhandari et al., 2020) as run here, all with Adam (fp32 parameters, gradients and moments):

- ``ddp``: DistributedDataParallel, every process holds everything.
- ``zero1``: optimizer states partitioned, torch.distributed.optim.ZeroRedundancyOptimizer over DDP.
- ``zero2``: optimizer states and gradients partitioned, `GradientPartitionedAdam` below: each parameter's
  gradient is reduce-scattered as soon as backward has accumulated it, the process keeps its shard and frees
  the full gradient, updates its shard of the parameter with Adam and all-gathers the updated shards.
- ``zero3``: parameters too, torch.distributed.fsdp.fully_shard (FSDP2) per block and on the model.

`model_state_bytes` counts the bytes of the tensors a process actually holds (a sharded tensor's local shard,
a view's own elements; Adam's scalar step counters are not model states and are left out); `formula_bytes`
is the paper's prediction: with Psi parameters, p bytes per parameter, g per gradient and K bytes of optimizer
state per parameter, DDP holds (p+g+K) Psi, stage 1 (p+g+K/N) Psi, stage 2 (p+(g+K)/N) Psi and stage 3
(p+g+K) Psi / N. The paper's mixed-precision Adam has p = g = 2 and K = 12 (fp32 master copy and moments); fp32
Adam here has p = g = 4 and K = 8 (the two moments; the parameters are their own master copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tradeoffs.train.collectives import CountingGroup

STAGES = ("ddp", "zero1", "zero2", "zero3")
STAGE_NUMBER = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3}


@dataclass(frozen=True)
class ModelStateBytes:
    """Bytes of model states one process holds (counted: whole bytes; the formula's: fractions where N_d does
    not divide Psi)."""

    parameters: float
    gradients: float
    optimizer_states: float

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer_states


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded tensor's (DTensor's) local shard, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def tensor_bytes(tensors) -> int:
    """Bytes of the elements of `tensors` this process holds (local shards of sharded tensors), each distinct
    tensor once."""
    seen, total = set(), 0
    for tensor in tensors:
        local = _local(tensor)
        key = (local.data_ptr(), local.numel(), local.dtype)
        if local.numel() and key not in seen:
            seen.add(key)
            total += local.numel() * local.element_size()
    return total


def optimizer_state_tensors(optimizer) -> list[torch.Tensor]:
    """The state tensors (Adam's moments) an optimizer holds on this process, its scalar step counters left out;
    ZeroRedundancyOptimizer's are those of its local optimizer (this process's partition)."""
    local = getattr(optimizer, "optim", optimizer)
    return [
        value
        for state in local.state.values()
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and key != "step"
    ]


def model_state_bytes(parameters, gradients, optimizer_states: list[torch.Tensor]) -> ModelStateBytes:
    """Count the model states one process holds, from the tensors themselves."""
    return ModelStateBytes(tensor_bytes(parameters), tensor_bytes(gradients), tensor_bytes(optimizer_states))


def formula_bytes(
    stage: str, psi: int, processes: int, param_bytes: int = 4, grad_bytes: int = 4, k: int = 8
) -> ModelStateBytes:
    """ZeRO's prediction of the model-state bytes per process (module docstring) for `stage` of STAGES."""
    n = processes
    shard = {"ddp": (1, 1, 1), "zero1": (1, 1, n), "zero2": (1, n, n), "zero3": (n, n, n)}[stage]
    return ModelStateBytes(param_bytes * psi / shard[0], grad_bytes * psi / shard[1], k * psi / shard[2])


def _chunk(numel: int, world: int, rank: int) -> tuple[int, int, int]:
    """(start, end, chunk length) of `rank`'s even shard of a flat tensor of `numel` elements, the last shards
    shorter (the padding of the collectives is not held)."""
    chunk = math.ceil(numel / world)
    start = min(rank * chunk, numel)
    return start, min(start + chunk, numel), chunk


class GradientPartitionedAdam:
    """ZeRO stage 2 over the default process group (see the module docstring): Adam (torch.optim.Adam's update)
    on this process's shard of every parameter, the gradients reduce-scattered during backward through
    `group`, which counts the bytes; the updated shards are all-gathered in `step`."""

    def __init__(self, model: torch.nn.Module, group: CountingGroup, **adam) -> None:
        self.group = group
        self.rank = dist.get_rank() if group.world > 1 else 0
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shards: list[torch.Tensor] = []
        for parameter in self.params:
            start, end, _ = _chunk(parameter.numel(), group.world, self.rank)
            self.shards.append(parameter.detach().view(-1)[start:end])  # a view: updates land in the parameter
            parameter.register_post_accumulate_grad_hook(self._reduce_scatter)
        self._shard_of = {id(p): s for p, s in zip(self.params, self.shards, strict=True)}
        self.optimizer = torch.optim.Adam(self.shards, **adam)

    def _reduce_scatter(self, parameter: torch.Tensor) -> None:
        """Keep this process's shard of the averaged gradient; free the full one."""
        numel, world = parameter.numel(), self.group.world
        start, end, chunk = _chunk(numel, world, self.rank)
        padded = torch.zeros(chunk * world, dtype=parameter.dtype, device=parameter.device)
        padded[:numel] = parameter.grad.reshape(-1)
        mine = torch.empty(chunk, dtype=parameter.dtype, device=parameter.device)
        self.group.reduce_scatter(mine, padded)
        self._shard_of[id(parameter)].grad = mine[: end - start].div_(world)
        parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Adam on the shards, then every process gathers the updated parameters."""
        self.optimizer.step()
        world = self.group.world
        for parameter, shard in zip(self.params, self.shards, strict=True):
            _, _, chunk = _chunk(parameter.numel(), world, self.rank)
            send = torch.zeros(chunk, dtype=parameter.dtype, device=parameter.device)
            send[: shard.numel()] = shard
            gathered = torch.empty(chunk * world, dtype=parameter.dtype, device=parameter.device)
            self.group.all_gather(gathered, send)
            parameter.view(-1).copy_(gathered[: parameter.numel()])

    def zero_grad(self) -> None:
        """Drop the gradient shards (the next backward writes new ones)."""
        for shard in self.shards:
            shard.grad = None

    @property
    def gradients(self) -> list[torch.Tensor]:
        """The gradient shards this process holds."""
        return [s.grad for s in self.shards if s.grad is not None]

    @property
    def state(self) -> dict:
        return self.optimizer.state


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """ZeRO stage 3: FSDP2's fully_shard on every block and on the model (parameters, gradients and optimizer
    states become DTensors sharded on dim 0 over the default process group)."""
    from torch.distributed.fsdp import fully_shard

    for block in getattr(model, "blocks", ()):
        fully_shard(block)
    fully_shard(model)
    return model
