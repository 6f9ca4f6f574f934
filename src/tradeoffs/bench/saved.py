"""Exact bytes of the tensors autograd keeps for backward, and a measurement in a forked child.

`count_saved()` wraps a forward in `torch.autograd.graph.saved_tensors_hooks` and counts every tensor the graph
saves, once per storage (views of one storage share it: the bytes held are the storage's). Parameters (and
views of them, such as a Linear's transposed weight) are held by the model anyway and are left out when
`exclude` names them, so what remains is the activation memory a strategy can change.

`in_fork(fn)` runs `fn` in a forked child and returns what it returns (pickled through a pipe): the child's
RSS high-water mark then covers that one measurement only, with nothing left over from earlier ones.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def storage_key(tensor: Tensor) -> tuple[str, int]:
    """The identity of a tensor's storage: its device and data pointer."""
    return str(tensor.device), tensor.untyped_storage().data_ptr()


@dataclass
class SavedTensors:
    """What a forward saved for backward: storage bytes by storage (deduplicated), and tensor counts."""

    storages: dict[tuple[str, int], int] = field(default_factory=dict)
    tensors: int = 0  # saved tensors counted (views of one storage included)
    excluded: int = 0  # saved tensors left out (parameters and views of them)

    @property
    def bytes(self) -> int:
        """Bytes of the distinct storages saved for backward."""
        return sum(self.storages.values())


@contextlib.contextmanager
def count_saved(exclude: Iterable[Tensor] = ()) -> Iterator[SavedTensors]:
    """Count the storages of the tensors saved for backward inside the block (those of `exclude`, e.g. a
    model's parameters, left out). The tensors themselves are kept as they are: the count changes nothing."""
    excluded = {storage_key(t) for t in exclude}
    saved = SavedTensors()

    def pack(tensor: Tensor) -> Tensor:
        key = storage_key(tensor)
        if key in excluded:
            saved.excluded += 1
        else:
            saved.tensors += 1
            saved.storages[key] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved


def in_fork(fn: Callable[[], Any]) -> Any:
    """Run `fn()` in a forked child process and return its (picklable) result; an exception in the child is
    raised again here with its message. POSIX only; never with CUDA initialised (CUDA does not survive fork)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send, and leave without running the parent's exit handlers
        os.close(read)
        try:
            payload = pickle.dumps(("ok", fn()))
        except BaseException as error:  # every failure goes back to the parent
            payload = pickle.dumps(("error", f"{type(error).__name__}: {error}"))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"forked measurement died without a result (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise RuntimeError(f"forked measurement failed: {value}")
    return value
