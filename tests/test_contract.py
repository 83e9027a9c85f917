"""The autograd contract of every op in ddkernels.registry, on every kernel backend that runs here, in eager mode
and under torch.compile(fullgraph=True). Op-specific numerics live in the per-op test files."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddkernels
from ddkernels import registry
from helpers import INTERPRETED, NON_CONTIGUOUS_VIEWS, device_of, kernel_backends, non_contiguous_pair, randn, rel_error

CASES = [pytest.param(entry, backend, id=f"{entry.name}-{backend}")
         for entry in registry.OPS.values() for backend in kernel_backends(entry.kernels)]
PAIR_SHAPE, SAMPLES_SHAPE = (3, 40, 5), (5, 3, 13)
# Which arguments require grad: (first, second) of a pair; a samples op has one argument.
GRAD_CASES = [pytest.param(entry, backend, requires_grad, id=f"{entry.name}-{backend}-{label}")
              for entry in registry.OPS.values() for backend in kernel_backends(entry.kernels)
              for label, requires_grad in ([("first", (True,))] if entry.samples else
                                           [("first", (True, False)), ("second", (False, True)),
                                            ("both", (True, True))])]
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-8, 1e-7)}


def _shape(entry):
    return SAMPLES_SHAPE if entry.samples else PAIR_SHAPE


def _inputs(entry, backend, dtype=torch.float32, requires_grad=(True, False), shape=None, seed=None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return entry.make_inputs(shape or _shape(entry), dtype, device_of(backend), requires_grad, gen)


def _upstream(output, scale):
    """An upstream gradient for ``output``: exactly ``scale`` for a loss, ``scale`` times fixed values otherwise."""
    if output.ndim == 0:
        return torch.full((), scale, dtype=output.dtype, device=output.device)
    values = torch.linspace(-1.0, 2.0, output.numel(), dtype=output.dtype, device=output.device)
    return scale * values.view(output.shape)


def _reference(entry, tensors, upstream, **kwargs):
    """(output, gradients of every tensor) of the float64 reference."""
    tensors64 = [t.detach().double().requires_grad_() for t in tensors]
    output = entry.call_reference(*tensors64, **kwargs)
    return output, torch.autograd.grad(output, tensors64, upstream.double())


def _gradient_error(grad, expected, joint):
    """Error relative to the gradient of all arguments: when the teacher's softmax is nearly one-hot, its KL
    gradient is ~1e-10 of the student's and cancels in any precision."""
    assert torch.isfinite(grad).all(), "gradient holds NaN or inf"
    return float((grad.detach().double().cpu() - expected.cpu()).norm() / joint.cpu().norm().clamp_min(1e-300))


def _check(entry, backend, tensors, function, upstream_scale, kwargs=None, dtype=torch.float32):
    """function(*tensors) and its gradients against the float64 reference."""
    kwargs = kwargs or {}
    with ddkernels.use_backend(backend):
        output = function(*tensors)
    upstream = _upstream(output.detach(), upstream_scale)
    wanted = [t for t in tensors if t.requires_grad]
    grads = torch.autograd.grad(output, wanted, upstream)
    expected, expected_grads = _reference(entry, tensors, upstream, **kwargs)
    expected_grads = [g for t, g in zip(tensors, expected_grads) if t.requires_grad]
    joint = torch.cat([g.flatten() for g in expected_grads])
    value_tol, grad_tol = TOLERANCE[dtype if backend == "cpu" or entry.samples else torch.float32]
    assert output.shape == expected.shape
    assert rel_error(output, expected) < value_tol * (1 if entry.scalar else 10)  # D: entries ~1e-2 of the largest
    for t, grad, ref in zip(wanted, grads, expected_grads):
        assert grad.shape == t.shape and grad.dtype == t.dtype
        assert _gradient_error(grad, ref, joint) < grad_tol


@pytest.mark.parametrize("entry,backend,requires_grad", GRAD_CASES)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_values_and_gradients(entry, backend, requires_grad, compiled):
    """An upstream gradient of exactly 1 and one other than 1, for each combination of arguments that require grad;
    compiled: the op alone under torch.compile(fullgraph=True), then backward."""
    tensors = _inputs(entry, backend, requires_grad=requires_grad)
    function = entry
    if compiled:
        torch._dynamo.reset()
        function = torch.compile(lambda *t: entry(*t), fullgraph=True)
    for upstream in (1.0, -0.7):
        _check(entry, backend, tensors, function, upstream)


@pytest.mark.parametrize("entry,backend", CASES)
def test_without_grad(entry, backend):
    tensors = _inputs(entry, backend)
    with torch.no_grad(), ddkernels.use_backend(backend):
        output = entry(*tensors)
    assert not output.requires_grad
    assert rel_error(output, entry.call_reference(*(t.detach().double() for t in tensors))) < 1e-5 * 10


@pytest.mark.parametrize("entry,backend", CASES)
def test_retain_graph_backward_twice(entry, backend):
    (first, *rest) = _inputs(entry, backend)
    with ddkernels.use_backend(backend):
        output = entry(first, *rest)
    upstream = _upstream(output.detach(), 1.0)
    output.backward(upstream, retain_graph=True)
    once = first.grad.clone()
    output.backward(upstream * 3.0)
    assert rel_error(first.grad, 4.0 * once) < 1e-6


@pytest.mark.parametrize("entry,backend", CASES)
def test_nan_propagates(entry, backend):
    (first, *rest) = _inputs(entry, backend)
    first = first.detach().clone()
    first[1, 2, 3] = float("nan")
    with ddkernels.use_backend(backend):
        assert torch.isnan(entry(first.requires_grad_(), *rest)).any()


LOW_PRECISION = [pytest.param(entry, backend, dtype, id=f"{entry.name}-{backend}-{str(dtype)[6:]}")
                 for entry in registry.OPS.values() for backend in kernel_backends(entry.kernels)
                 for dtype in (torch.float16, torch.bfloat16)
                 if not (backend == "triton" and INTERPRETED and dtype == torch.bfloat16)]  # the interpreter has none


@pytest.mark.parametrize("entry,backend,dtype", LOW_PRECISION)
def test_low_precision(entry, backend, dtype):
    """Half inputs are computed in float32: a float32 output at float32 accuracy on the rounded inputs; gradients in
    the input dtype within three roundings of the exact one (the multi-scale kernels keep the gradient in the input
    dtype, rounded again when the upstream gradient scales it)."""
    tensors = _inputs(entry, backend, dtype, requires_grad=(True, True))
    with ddkernels.use_backend(backend):
        output = entry(*tensors)
    upstream = _upstream(output.detach(), 1.3)
    grads = torch.autograd.grad(output, tensors, upstream)
    expected, expected_grads = _reference(entry, tensors, upstream)
    joint = torch.cat([g.flatten() for g in expected_grads])
    assert output.dtype == torch.float32 and all(g.dtype == dtype for g in grads)
    assert rel_error(output, expected) < 1e-5 * (1 if entry.scalar else 10)
    for grad, ref in zip(grads, expected_grads):
        assert _gradient_error(grad, ref, joint) <= 3 * _gradient_error(ref.to(dtype), ref, joint) + 1e-5


@pytest.mark.parametrize("entry", list(registry.OPS.values()), ids=list(registry.OPS))
def test_gradcheck_cpu(entry):
    shape = (4, 3, 5) if entry.samples else (2, 13, 3)
    tensors = entry.make_inputs(shape, torch.float64, requires_grad=(True, True))
    with ddkernels.use_backend("cpu"):
        assert torch.autograd.gradcheck(lambda *t: entry(*t), tensors)


@pytest.mark.parametrize("entry,backend", CASES)
def test_double_backward_is_a_clear_error(entry, backend):
    (first, *rest) = _inputs(entry, backend)
    with ddkernels.use_backend(backend):
        output = entry(first, *rest)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(output, first, _upstream(output.detach(), 1.0), create_graph=True)


def _non_contiguous_samples(view, device):
    """Samples [S, ...] as a view of kind ``view`` (distinct samples: an expanded axis lies inside each one)."""
    base = randn((9, 12, 10), torch.float32, device)
    return {"transpose": base.transpose(1, 2), "step": base[:, ::2, 1::3],
            "offset": base[1:, 3:-2].transpose(1, 2), "expand": base[:, :1].expand(9, 5, 10)}[view]


@pytest.mark.parametrize("entry,backend", CASES)
@pytest.mark.parametrize("view", NON_CONTIGUOUS_VIEWS)
def test_non_contiguous(entry, backend, view):
    if entry.samples:
        tensors, kwargs = (_non_contiguous_samples(view, device_of(backend)).requires_grad_(),), {}
    else:
        x, y, dim = non_contiguous_pair(view, device_of(backend))
        tensors, kwargs = (x.requires_grad_(), y.requires_grad_()), {"dim": dim}
    assert not all(t.is_contiguous() for t in tensors)
    _check(entry, backend, tensors, lambda *t: entry(*t, **kwargs), 1.7, kwargs)


def _draw_shape(entry, data):
    if entry.samples:
        samples = data.draw(st.integers(2, 12))
        return (samples,) + tuple(data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))), {}
    ndim = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    dim = data.draw(st.integers(-ndim, ndim - 1))
    shortest = max(entry.kwargs.get("scales", (2,)))
    length = data.draw(st.integers(shortest, 80))
    return shape[:dim % ndim] + (length,) + shape[dim % ndim + 1:], {"dim": dim}


@pytest.mark.parametrize("entry,backend", CASES)
@settings(max_examples=4 if INTERPRETED else 15, deadline=None)
@given(data=st.data())
def test_property_shapes(entry, backend, data):
    shape, kwargs = _draw_shape(entry, data)
    seed = data.draw(st.integers(0, 2**31 - 1))
    tensors = tuple(randn(shape, torch.float64, device_of(backend), seed + i).requires_grad_()
                    for i in range(1 if entry.samples else 2))
    _check(entry, backend, tensors, lambda *t: entry(*t, **kwargs), 1.7, kwargs, dtype=torch.float64)
