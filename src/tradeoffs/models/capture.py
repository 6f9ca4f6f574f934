"""Tensors of a model's Linear layers as training sees them: weight, input (activation) and output gradient,
captured with module hooks from one forward and backward pass."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class LinearTensors:
    weight: Tensor  # (out, in)
    activation: Tensor  # the Linear's input, flattened to (tokens, in)
    gradient: Tensor  # gradient of the loss w.r.t. the Linear's output, (tokens, out)


def capture_linear_tensors(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, LinearTensors]:
    """Run `model(x, y)` forward and backward and return every nn.Linear's tensors by module name. The
    gradients are those of the mean loss, scaled by the token count so their magnitude does not depend on
    the batch size."""
    activations: dict[str, Tensor] = {}
    gradients: dict[str, Tensor] = {}
    handles = []
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for name, module in linears.items():

        def keep_input(_module, inputs, _output, name=name):
            activations[name] = inputs[0].detach().reshape(-1, inputs[0].shape[-1])

        def keep_gradient(_module, _grad_input, grad_output, name=name):
            gradients[name] = grad_output[0].detach().reshape(-1, grad_output[0].shape[-1]) * y.numel()

        handles += [module.register_forward_hook(keep_input), module.register_full_backward_hook(keep_gradient)]
    try:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: LinearTensors(module.weight.detach().clone(), activations[name], gradients[name])
        for name, module in linears.items()
    }
