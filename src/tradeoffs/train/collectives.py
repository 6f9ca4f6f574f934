"""Collectives that count what they send: the data-parallel optimizers of tradeoffs.train.zero and
tradeoffs.train.onebit_adam call the process group through `CountingGroup`, which runs the real
torch.distributed collective and adds its payload to a per-step tally.

Bytes sent by one process are counted by the bandwidth-optimal algorithms' volume (ring all-reduce, ring
reduce-scatter and all-gather, pairwise all-to-all), the convention of NCCL's bus bandwidth: for N processes and
a tensor of B bytes, all_reduce sends 2(N-1)/N B, reduce_scatter (B the full input) (N-1)/N B, all_gather (B the
local input) (N-1) B, all_to_all (B the full input) (N-1)/N B. With one process nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def sent_bytes(collective: str, nbytes: int, world: int) -> float:
    """Bytes one of `world` processes sends in `collective` of a tensor of `nbytes` (module docstring)."""
    factor = {
        "all_reduce": 2 * (world - 1) / world,
        "reduce_scatter": (world - 1) / world,
        "all_gather": world - 1,
        "all_to_all": (world - 1) / world,
    }[collective]
    return factor * nbytes


@dataclass
class CountingGroup:
    """The default process group's collectives, each counted in `steps[-1]` (bytes sent by this process in the
    current step; `next_step()` opens the next one) and `by_collective`."""

    world: int = 1
    steps: list[float] = field(default_factory=lambda: [0.0])
    by_collective: dict[str, float] = field(default_factory=dict)

    @classmethod
    def current(cls) -> CountingGroup:
        """A counter over the initialised default process group (one process when there is none)."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return cls(world=world)

    @property
    def total(self) -> float:
        return sum(self.steps)

    def next_step(self) -> None:
        """Start counting the next step."""
        self.steps.append(0.0)

    def _count(self, collective: str, tensor: torch.Tensor) -> None:
        sent = sent_bytes(collective, tensor.numel() * tensor.element_size(), self.world)
        self.steps[-1] += sent
        self.by_collective[collective] = self.by_collective.get(collective, 0.0) + sent

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over the processes, in place."""
        self._count("all_reduce", tensor)
        if self.world > 1:
            dist.all_reduce(tensor)

    def reduce_scatter(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        """`output` receives this process's chunk of the sum of `tensor` over the processes."""
        self._count("reduce_scatter", tensor)
        if self.world > 1:
            dist.reduce_scatter_tensor(output, tensor)
        else:
            output.copy_(tensor)

    def all_gather(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        """`output` receives every process's `tensor`, concatenated in rank order."""
        self._count("all_gather", tensor)
        if self.world > 1:
            dist.all_gather_into_tensor(output, tensor)
        else:
            output.copy_(tensor)

    def all_to_all(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        """Chunk j of `tensor` goes to process j; `output` holds chunk `rank` of every process, in rank order."""
        self._count("all_to_all", tensor)
        if self.world > 1:
            dist.all_to_all_single(output, tensor)
        else:
            output.copy_(tensor)
