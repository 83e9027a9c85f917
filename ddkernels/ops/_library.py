"""The one autograd mechanism of every kernel op, in eager and compiled code alike.

Each op is a ``torch.library`` operator in the ``ddkernels`` namespace: a schema, one implementation for every
device (its ``backend`` argument names the launcher module, ``ddkernels.kernels`` or ``ddkernels.cpu``), a fake
kernel for tracing, and an Autograd kernel that runs a ``torch.autograd.Function`` around the operator. The public
functions always call the operator, so eager calls and ``torch.compile`` (which records the operator in its graph
and traces the same backward) run the same code. The forward kernels of the losses compute the gradient of the
scalar loss when an input requires grad; the backward scales it by the upstream gradient (``scale_gradient``).
The Autograd kernel is registered directly rather than through ``torch.library.custom_op``, whose Python wrapper
costs more than a small kernel call in eager mode.
"""
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

LIBRARY = torch.library.Library("ddkernels", "DEF")
_AFTER_AUTOGRAD = torch._C._after_autograd_keyset


def plain_eager(t):
    """True outside torch.compile and tracing (fake, proxy, functional modes)."""
    return not (torch.compiler.is_compiling() or type(t) is not torch.Tensor or _get_current_dispatch_mode() is not None)


def scale_gradient(grad, grad_output, dtype, backend):
    """grad * grad_output as ``dtype``, for a gradient the forward computed.

    On the cpu backend in eager mode, an upstream gradient of exactly 1 (the loss is the last node) skips the
    product. Elsewhere the product is always taken: on CUDA, finding out would read a device scalar on the host,
    a sync that costs more than the product and breaks CUDA-graph capture.
    """
    if backend == "cpu" and plain_eager(grad_output) and grad_output.item() == 1.0:
        return grad.to(dtype)
    return (grad * grad_output.to(grad.dtype)).to(dtype)


def _check_first_order(name, grads):
    if torch.is_grad_enabled() and any(g is not None and plain_eager(g) for g in grads):
        raise RuntimeError(f"{name}: double backward (create_graph=True) is not supported by the kernel "
                           "backends; use backend 'reference' for higher-order gradients")


def define(schema, implementation, fake, setup_context=None, backward=None):
    """Register the operator ``ddkernels::<schema>`` and return it (an OpOverload).

    ``setup_context(ctx, inputs, output)`` and ``backward(ctx, *grad_outputs)`` (one gradient or None per
    operator argument, ``ctx.needs_input_grad`` aligned with those arguments) give it its autograd formula;
    without them the operator is not differentiable (a backward operator).
    """
    name = schema.split("(", 1)[0]
    LIBRARY.define(schema)
    LIBRARY.impl(name, implementation, "CompositeExplicitAutograd")
    torch.library.register_fake(f"ddkernels::{name}", fake, lib=LIBRARY)
    op = getattr(torch.ops.ddkernels, name).default
    if backward is None:
        return op

    def forward(ctx, keyset, *args):
        with torch._C._AutoDispatchBelowAutograd():
            # In plain eager mode the dispatcher's next kernel is the implementation itself: call it directly.
            output = implementation(*args) if plain_eager(args[0]) else op.redispatch(keyset & _AFTER_AUTOGRAD, *args)
        setup_context(ctx, args, output)
        return output

    def autograd_backward(ctx, *grads):
        _check_first_order(name, grads)
        with_keyset = ctx.needs_input_grad
        ctx.needs_input_grad = with_keyset[1:]  # aligned with the operator's arguments, for this call only
        try:
            return (None, *backward(ctx, *grads))
        finally:
            ctx.needs_input_grad = with_keyset

    function = type(f"{name}_function", (torch.autograd.Function,),
                    {"forward": staticmethod(forward), "backward": staticmethod(autograd_backward)})

    def autograd_kernel(keyset, *args):
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return function.apply(keyset, *args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & _AFTER_AUTOGRAD, *args)

    LIBRARY.impl(name, autograd_kernel, "Autograd", with_keyset=True)
    return op
