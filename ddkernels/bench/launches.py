"""Kernel launches per op call on the Triton (CUDA) path, and a check that the path reads nothing back to the
host, without a GPU: the Triton kernels run in Triton's interpreter on CPU tensors. Counted: Triton kernel launches
and the ATen ops that launch a CUDA kernel (metadata ops such as views and allocations do not); host reads: item,
tolist, bool, float, int, index, numpy and cpu called on a tensor by ddkernels' code (the interpreter's own reads
are excluded).

    TRITON_INTERPRET=1 python -m ddkernels.bench.launches
"""
import collections
import contextlib
import os
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}
# ATen ops that only make or reshape tensor metadata, or allocate: no kernel launch on CUDA.
NO_LAUNCH = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "view", "_unsafe_view",
             "reshape", "_reshape_alias", "as_strided", "t", "transpose", "permute", "expand", "select", "slice",
             "unsqueeze", "squeeze", "detach", "alias", "view_as_real", "view_as_complex", "unbind", "split",
             "lift_fresh", "resolve_conj", "resolve_neg"}




_IMPLEMENTATION_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


class LaunchWatch:
    """Counts launches and records host reads while active; paused inside the Triton interpreter's launches."""

    def __init__(self):
        self.triton = collections.Counter()
        self.aten = collections.Counter()
        self.host_reads = []
        self.paused = 0
        watch = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if not watch.paused and getattr(func, "__name__", "") in HOST_READS:
                    watch.host_reads.append(func.__name__)
                return func(*args, **(kwargs or {}))

        class Dispatches(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.namespace == "ddkernels":  # run its implementation with this mode in force, to see inside
                    with self:
                        return func.redispatch(_IMPLEMENTATION_KEYS, *args, **(kwargs or {}))
                output = func(*args, **(kwargs or {}))
                name = func.overloadpacket.__name__
                if not watch.paused and name not in NO_LAUNCH and output is not args[0]:  # ``to`` a tensor's own dtype
                    watch.aten[name] += 1
                return output

        self._modes = (Functions(), Dispatches())

    @contextlib.contextmanager
    def active(self):
        from triton.runtime import interpreter
        original = interpreter.GridExecutor.__call__
        watch = self

        def launch(executor, *args, **kwargs):
            watch.triton[executor.fn.__name__] += 1
            watch.paused += 1
            try:
                return original(executor, *args, **kwargs)
            finally:
                watch.paused -= 1

        interpreter.GridExecutor.__call__ = launch
        try:
            with self._modes[0], self._modes[1]:
                yield self
        finally:
            interpreter.GridExecutor.__call__ = original

    @property
    def launches(self):
        return sum(self.triton.values()) + sum(self.aten.values())


def count(entry, shape, upstream=-0.7, **kwargs):
    """{"forward": LaunchWatch, "backward": LaunchWatch} of one call of the registry ``entry`` (with ``kwargs``) on
    the triton backend, the first tensor requiring grad."""
    import ddkernels
    tensors = entry.make_inputs(shape, torch.float32, "cpu", requires_grad=(True, False))
    with ddkernels.use_backend("triton"):
        entry(*tensors, **kwargs)  # caches (the cos/sin basis) filled outside the counted call
        forward, backward = LaunchWatch(), LaunchWatch()
        with forward.active():
            output = entry(*tensors, **kwargs)
        grad_output = torch.full_like(output, upstream)
        with backward.active():
            output.backward(grad_output)
    return {"forward": forward, "backward": backward}


def main():
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("set TRITON_INTERPRET=1 before running (the Triton kernels run in the interpreter here)")
    from ddkernels import registry
    shapes = {False: (4, 96, 7), True: (8, 7, 96)}
    print(f"{'op':24s} {'forward':>8s} {'backward':>9s}  host reads  kernels (forward; backward)")
    for entry in registry.OPS.values():
        watches = count(entry, shapes[entry.samples])
        reads = sum(len(w.host_reads) for w in watches.values())
        kernels = "; ".join(", ".join(f"{k} x{v}" if v > 1 else k for k, v in (w.triton + w.aten).items())
                            for w in watches.values())
        print(f"{entry.name:24s} {watches['forward'].launches:8d} {watches['backward'].launches:9d}  {reads:10d}  "
              f"{kernels}")


if __name__ == "__main__":
    main()
