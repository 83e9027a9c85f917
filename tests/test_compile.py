"""Custom-op registration: opcheck, and torch.compile(fullgraph=True) of a training step without graph breaks."""
import pytest
import torch

import ddkernels
from ddkernels.ops import multiscale_mse, pairwise_skl, spectral_kl, spectral_l1
from helpers import device_of, kernel_backends, randn, rel_error

BACKENDS = kernel_backends(multiscale_mse.KERNELS)
assert kernel_backends(spectral_l1.KERNELS) == BACKENDS and kernel_backends(spectral_kl.KERNELS) == BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compute_grad", [True, False])
def test_opcheck_multiscale(backend, compute_grad):
    device = device_of(backend)
    x = randn((3, 20, 5), torch.float32, device).requires_grad_(compute_grad)
    y = randn((3, 20, 5), torch.float32, device)
    torch.library.opcheck(torch.ops.ddkernels.multiscale_mse.default,
                          (x, y, 1, [1, 2, 4], [0.2, 0.3, 0.5], None, backend, compute_grad))
    weights = torch.tensor([0.2, 0.3, 0.5], device=device)
    torch.library.opcheck(torch.ops.ddkernels.multiscale_mse.default,
                          (x, y, 1, [1, 2, 4], [], weights, backend, compute_grad))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grads", [(True, False), (False, True), (True, True), (False, False)])
@pytest.mark.parametrize("mode", ["complex", "amplitude"])
def test_opcheck_spectral_l1(backend, grads, mode):
    device = device_of(backend)
    x, y = randn((3, 21, 5), torch.float32, device), randn((3, 21, 5), torch.float32, device)
    torch.library.opcheck(torch.ops.ddkernels.spectral_l1.default, (x, y, 1, mode, "ortho", backend, *grads))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grads", [(True, False), (False, True), (True, True), (False, False)])
def test_opcheck_spectral_kl(backend, grads):
    device = device_of(backend)
    x, y = randn((3, 20, 5), torch.float32, device), randn((3, 20, 5), torch.float32, device)
    torch.library.opcheck(torch.ops.ddkernels.spectral_kl.default, (x, y, 1, 0.5, None, backend, *grads))
    tau = torch.tensor(0.5, dtype=torch.float64)  # a 0-d tensor tau, as a compiled call passes it
    torch.library.opcheck(torch.ops.ddkernels.spectral_kl.default, (x, y, 1, 1.0, tau, backend, *grads))


@pytest.mark.parametrize("backend", kernel_backends(pairwise_skl.KERNELS))
@pytest.mark.parametrize("compute_grad", [True, False])
def test_opcheck_pairwise(backend, compute_grad):
    device = device_of(backend)
    x = randn((5, 3, 7), torch.float32, device).requires_grad_(compute_grad)
    for tau, tau_tensor in ((0.7, None), (1.0, torch.tensor(0.7))):  # a float, or a 0-d tensor as compiled calls
        torch.library.opcheck(torch.ops.ddkernels.pairwise_skl_diversity.default,
                              (x, tau, tau_tensor, backend, compute_grad))
        torch.library.opcheck(torch.ops.ddkernels.pairwise_skl_matrix.default, (x, tau, tau_tensor, backend))
        torch.library.opcheck(torch.ops.ddkernels.pairwise_skl_matrix_backward.default,
                              (x.detach(), tau, tau_tensor, randn((5, 5), torch.float32, device), backend))


class _Student(torch.nn.Module):
    def __init__(self, seq_len, pred_len):
        super().__init__()
        self.linear = torch.nn.Linear(seq_len, pred_len)

    def forward(self, x):                      # [B, seq_len, C] -> [B, pred_len, C]
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def backend_has_pairwise():
    return ddkernels.current_backend() in pairwise_skl.KERNELS


def _kernel_losses(model, x, teacher):
    pred = model(x)
    return (ddkernels.multiscale_mse_loss(pred, teacher)
            + 0.5 * ddkernels.spectral_kl_loss(pred, teacher)
            + 0.5 * ddkernels.spectral_l1_loss(pred, teacher)
            + 0.25 * ddkernels.spectral_l1_loss(pred, teacher, mode="amplitude", norm="ortho")
            + (0.1 * ddkernels.pairwise_skl_diversity(pred) if backend_has_pairwise() else 0.0))


def _all_losses(model, x, teacher):
    pred = model(x)
    return (ddkernels.multiscale_mse_loss(pred, teacher)
            + 0.5 * ddkernels.spectral_kl_loss(pred, teacher)
            + 0.5 * ddkernels.spectral_l1_loss(pred, teacher)
            + 0.1 * ddkernels.pairwise_skl_diversity(pred))


@pytest.mark.parametrize("backend", ["auto", "reference"] + BACKENDS)
def test_compiled_training_step(backend):
    """Every op under auto and reference; the kernel backends with the ops that have their kernels."""
    loss_fn = _all_losses if backend in ("auto", "reference") else _kernel_losses
    device = device_of(backend)
    torch.manual_seed(0)
    model = _Student(24, 16).to(device)
    x, teacher = randn((4, 24, 3), torch.float32, device), randn((4, 16, 3), torch.float32, device)
    torch._dynamo.reset()
    with ddkernels.use_backend(backend):
        eager = loss_fn(model, x, teacher)
        eager_grads = torch.autograd.grad(eager, list(model.parameters()))
        compiled_loss = torch.compile(loss_fn, fullgraph=True)
        compiled = compiled_loss(model, x, teacher)
        compiled_grads = torch.autograd.grad(compiled, list(model.parameters()))
    assert rel_error(compiled, eager) < 1e-5
    for g, e in zip(compiled_grads, eager_grads):
        assert rel_error(g, e) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["multiscale", "spectral_l1", "spectral_kl", "pairwise"])
def test_backward_fills_no_zero_gradients(backend, name):
    # the gradient outputs saved from the forward are non-differentiable: autograd must not zero-fill
    # gradients for them (a full-size fill per backward)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    device = device_of(backend)
    x = torch.randn(4, 33, 5, device=device, requires_grad=True)
    y = torch.randn(4, 33, 5, device=device)
    calls = {"multiscale": lambda: ddkernels.multiscale_mse_loss(x, y),
             "spectral_l1": lambda: ddkernels.spectral_l1_loss(x, y),
             "spectral_kl": lambda: ddkernels.spectral_kl_loss(x, y),
             "pairwise": lambda: ddkernels.pairwise_skl_diversity(x)}
    with ddkernels.use_backend(backend):
        loss = calls[name]()
        with Record() as record:
            (loss * 1.5).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not [op for op in record.ops if "zero" in op or "fill" in op], record.ops


def _tau_losses(pred, teacher, tau):
    return (ddkernels.spectral_kl_loss(pred, teacher, tau=tau) + 0.1 * ddkernels.pairwise_skl_diversity(pred, tau=tau)
            + 0.01 * ddkernels.pairwise_skl_matrix(pred, tau=tau).sum())


@pytest.mark.parametrize("backend", ["auto", "reference"] + kernel_backends(pairwise_skl.KERNELS))
def test_compiled_tensor_tau(backend):
    """A 0-d tensor tau is a graph input under torch.compile(fullgraph=True): its value is read when the graph runs
    (a new value needs no recompile and is not baked in), and a bad one is refused then."""
    device = device_of(backend)
    pred = randn((4, 16, 3), torch.float32, device).requires_grad_()
    teacher = randn((4, 16, 3), torch.float32, device)
    torch._dynamo.reset()
    with ddkernels.use_backend(backend):
        compiled = torch.compile(_tau_losses, fullgraph=True)
        for value in (0.6, 0.9):
            eager = _tau_losses(pred, teacher, value)
            (eager_grad,) = torch.autograd.grad(eager, pred)
            loss = compiled(pred, teacher, torch.tensor(value))
            (grad,) = torch.autograd.grad(loss, pred)
            assert rel_error(loss, eager) < 1e-5 and rel_error(grad, eager_grad) < 1e-4
        with pytest.raises(ValueError, match="tau must be finite and > 0, got -1.0"):
            compiled(pred, teacher, torch.tensor(-1.0))
