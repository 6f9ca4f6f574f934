"""1-bit Adam (Tang et al., 2021) over the default process group, every collective counted (CountingGroup).

Warm-up (the first `warmup_steps` steps): plain data-parallel Adam, the gradients all-reduced uncompressed (fp32).
Compression stage: the variance is frozen at its warm-up value; each process updates its momentum with its own
gradient and the momenta are averaged by an error-compensated 1-bit all-reduce:

1. worker: c = m + e_w; one scale s_w = ||c||_2 / sqrt(n) for the whole tensor and the signs of c, packed 8 to a
   byte (uint8); the worker error e_w = c - s_w sign(c) is kept for the next step;
2. chunk j of every worker's packed signs goes to process j (all-to-all), the scales to everyone (all-gather);
3. server j: the mean of the workers' decompressed chunks plus its error e_s, compressed the same way (one scale
   per chunk), e_s = its remainder;
4. the servers' packed chunks and scales are all-gathered, and every process decompresses the averaged momentum.

Per step and process this sends 2(N-1)/N n/8 bytes of signs plus 8(N-1) bytes of scales, against 2(N-1)/N 4n
bytes for the fp32 all-reduce: 32 times less (the paper's 16 is against fp16 communication). With `warmup_steps`
equal to the run's steps it is plain Adam with an all-reduce of the gradients: the uncompressed baseline.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from tradeoffs.train.collectives import CountingGroup

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_signs(values: torch.Tensor) -> torch.Tensor:
    """The signs of `values` (numel a multiple of 8; zero counts as +) packed 8 to a byte, first element in the
    highest bit: a uint8 tensor of numel / 8 elements."""
    if values.numel() % 8:
        raise ValueError(f"pack_signs needs a multiple of 8 elements, got {values.numel()}")
    bits = (values.reshape(-1, 8) >= 0).to(torch.uint8)
    return (bits * _BIT_WEIGHTS.to(bits.device)).sum(dim=1, dtype=torch.uint8)


def unpack_signs(packed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The +1/-1 signs `pack_signs` packed, as a flat tensor of 8 x packed.numel() elements."""
    bits = (packed.reshape(-1, 1) & _BIT_WEIGHTS.to(packed.device)) > 0
    return bits.to(dtype).mul_(2).sub_(1).reshape(-1)


def compress(values: torch.Tensor, error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Error-compensated 1-bit compression of `values` (flat): returns (packed signs, scale) of c = values +
    error with scale ||c||_2 / sqrt(n), and updates `error` in place to c - scale sign(c)."""
    corrected = values + error
    scale = corrected.norm() / math.sqrt(corrected.numel())
    packed = pack_signs(corrected)
    error.copy_(corrected - scale * unpack_signs(packed, corrected.dtype))
    return packed, scale.reshape(1)


class OneBitAdam:
    """1-bit Adam over flat fp32 buffers of `params` (module docstring). Call `step()` after backward; the
    bytes each step sends are in `group.steps`. Matches torch.optim.Adam's update (no weight decay, bias
    corrections; the variance's correction frozen with the variance)."""

    def __init__(
        self,
        params,
        group: CountingGroup,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: int,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.group, self.lr, self.betas, self.eps, self.warmup_steps = group, lr, betas, eps, warmup_steps
        self.rank = dist.get_rank() if group.world > 1 else 0
        self.numel = sum(p.numel() for p in self.params)
        unit = 8 * group.world  # every process's chunk holds whole bytes of signs
        self.padded = math.ceil(self.numel / unit) * unit
        self.device = self.params[0].device
        self.exp_avg = torch.zeros(self.padded, device=self.device)
        self.exp_avg_sq = torch.zeros(self.padded, device=self.device)
        self.worker_error = torch.zeros(self.padded, device=self.device)
        self.server_error = torch.zeros(self.padded // group.world, device=self.device)
        self.steps_taken = 0

    @property
    def compressing(self) -> bool:
        """Whether the next step is of the compression stage."""
        return self.steps_taken >= self.warmup_steps

    def _flat_gradient(self) -> torch.Tensor:
        flat = torch.zeros(self.padded, device=self.device)
        offset = 0
        for p in self.params:
            if p.grad is not None:
                flat[offset : offset + p.numel()] = p.grad.reshape(-1)
            offset += p.numel()
        return flat

    def compressed_allreduce(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the processes through the error-compensated 1-bit exchange (steps 1-4 of the
        module docstring); updates the worker and server errors."""
        world, chunk = self.group.world, self.padded // self.group.world
        signs, scale = compress(values, self.worker_error)
        received = torch.empty_like(signs)
        self.group.all_to_all(received, signs)
        scales = torch.empty(world, device=self.device)
        self.group.all_gather(scales, scale)
        workers = unpack_signs(received).reshape(world, chunk) * scales.reshape(world, 1)
        server_signs, server_scale = compress(workers.mean(dim=0), self.server_error)
        all_signs = torch.empty(self.padded // 8, dtype=torch.uint8, device=self.device)
        self.group.all_gather(all_signs, server_signs)
        server_scales = torch.empty(world, device=self.device)
        self.group.all_gather(server_scales, server_scale)
        return (unpack_signs(all_signs).reshape(world, chunk) * server_scales.reshape(world, 1)).reshape(-1)

    @torch.no_grad()
    def step(self) -> None:
        """One optimizer step (warm-up or compression stage), the gradients read from the parameters."""
        beta1, beta2 = self.betas
        gradient = self._flat_gradient()
        if not self.compressing:
            self.group.all_reduce(gradient)
            gradient.div_(self.group.world)
            self.exp_avg.lerp_(gradient, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        else:
            self.exp_avg.lerp_(gradient, 1 - beta1)
            self.exp_avg.copy_(self.compressed_allreduce(self.exp_avg))
        self.steps_taken += 1
        step_size = self.lr / (1 - beta1**self.steps_taken)
        variance_correction = math.sqrt(1 - beta2 ** min(self.steps_taken, self.warmup_steps))
        denominator = (self.exp_avg_sq.sqrt() / variance_correction).add_(self.eps)
        update = self.exp_avg / denominator
        offset = 0
        for p in self.params:
            p.add_(update[offset : offset + p.numel()].view_as(p), alpha=-step_size)
            offset += p.numel()

    def zero_grad(self) -> None:
        """Drop the parameters' gradients."""
        for p in self.params:
            p.grad = None

    @property
    def state_tensors(self) -> list[torch.Tensor]:
        """What the optimizer holds per process: both moments, the worker error and this server's error."""
        return [self.exp_avg, self.exp_avg_sq, self.worker_error, self.server_error]
