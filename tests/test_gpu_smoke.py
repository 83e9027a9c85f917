"""gpu_smoke: every op, mode, gradient pattern and dtype on the Triton backend against the float64 reference, loss
and gradients, with an upstream gradient of 1.7.

On a GPU (compiled Triton) it runs the issue shapes ([32, 336, 321], [256, 720, 21], pairwise S = 500) and awkward
ones in float32, float16 and bfloat16; benchmarks/run_gpu.sh runs it as its correctness stage (`pytest -m
gpu_smoke`). Without a GPU the same tests run in Triton's interpreter on small shapes, float32 and float16, so that
they cannot rot.
"""
import functools
import itertools

import pytest
import torch

import ddkernels
from ddkernels import registry
from helpers import rel_error

pytestmark = pytest.mark.gpu_smoke

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
DTYPES = [torch.float32, torch.float16, torch.bfloat16] if ON_GPU else [torch.float32, torch.float16]
UPSTREAM = 1.7
# ||error|| / ||reference||. The kernels accumulate in float32 (spectral products in tf32x3, pairwise in float64)
# for every input dtype, so the loss is float32-accurate; gradients come back rounded to the input's dtype.
LOSS_TOLERANCE = 1e-5
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

# (shape, dim, transposed): transposed builds the tensor as [C, T, B] memory viewed as [B, T, C] (strided time).
LOSS_CASES = [
    ((32, 336, 321), 1, False),     # the issue shapes
    ((256, 720, 21), 1, False),
    ((3, 37, 5), 1, False),         # odd prime length
    ((5, 1500, 3), 1, False),       # above the dense-basis length: cuFFT spectra
    ((7, 1001), -1, False),         # time innermost, odd
    ((50, 4, 3), 0, False),         # time along the leading dim
    ((16, 96, 21), 1, True),        # strided time
] if ON_GPU else [
    ((4, 48, 5), 1, False),
    ((3, 37, 5), 1, False),         # odd prime length
    ((2, 1030, 2), 1, False),       # above the dense-basis length: torch.fft spectra
    ((6, 40), -1, False),           # time innermost
    ((5, 24, 3), 1, True),          # strided time
]
PAIRWISE_CASES = [
    (500, 7, 192),                  # the issue shape
    (2, 3),                         # two samples, odd length
    (33, 5, 7),                     # one sample past a 32-sample tile
    (70, 1000),
] if ON_GPU else [
    (10, 7, 19),
    (2, 3),
    (33, 2, 3),
]

# name: (registry entry, keyword arguments beyond the entry's own)
LOSSES = {
    "spectral_l1-complex": (registry.OPS["spectral_l1_complex"], {}),
    "spectral_l1-amplitude-ortho": (registry.OPS["spectral_l1_amplitude"], dict(norm="ortho")),
    "spectral_kl": (registry.OPS["spectral_kl"], {}),
    "multiscale_mse": (registry.OPS["multiscale_mse"], {}),
    "multiscale_mse-weighted-1-3-5": (registry.OPS["multiscale_mse"], dict(scales=(1, 3, 5), weights=(0.2, 0.3, 0.5))),
}
# Which arguments require grad: both (distillation), the first (a fixed target), none (evaluation).
REQUIRES = {"both": (True, True), "first": (True, False), "none": (False, False)}


def _randn(shape, dtype, transposed=False, seed=None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if transposed:
        return torch.randn(shape[::-1], generator=gen, dtype=torch.float64).to(DEVICE, dtype).transpose(0, -1)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)


def _loss_inputs(name, shape, dtype, transposed):
    x = _randn(shape, dtype, transposed)
    if "amplitude" in name:
        # The amplitude gradient holds sign(|F x| - |F y|), which flips between precisions at bins where the two
        # magnitudes tie; a target of x / 2 keeps every bin away from a tie.
        return x, (x * 0.5).to(dtype)
    return x, _randn(shape, dtype, transposed)


def _compare(loss, grads, expected, expected_grads, dtype, joint_second=False):
    assert loss.shape == () and loss.dtype == torch.float32
    assert rel_error(loss, expected) < LOSS_TOLERANCE
    for index, (grad, ref) in enumerate(zip(grads, expected_grads)):
        if grad is None:
            continue
        # A mean over millions of elements has float16 gradients near or below float16's smallest normal (6e-5), where
        # its spacing is 6e-8: the bound is at most twice the error of the float64 gradient correctly rounded to the
        # dtype (what any float16 op can reach; training in float16 scales the loss, as torch.amp.GradScaler does).
        tolerance = max(GRAD_TOLERANCE[dtype], 2 * rel_error(ref.to(dtype), ref))
        assert grad.dtype == dtype and grad.shape == ref.shape
        if index == 1 and joint_second:
            # The teacher's KL gradient is ~1e-10 of the student's where its softmax is nearly one-hot, and cancels
            # in any precision: measure it against both gradients together.
            assert torch.isfinite(grad).all()
            joint = torch.cat([r.flatten() for r in expected_grads if r is not None])
            assert float((grad.double() - ref).norm() / joint.norm()) < tolerance
        else:
            assert rel_error(grad, ref) < tolerance


def _combinations(cases, names, requires, spectral_only_above=None):
    """pytest params (name, *case, requires, dtype). On a GPU every combination. In the (slow) interpreter the first
    case gets every dtype and gradient pattern and the others float32 with the first pattern; lengths above
    ``spectral_only_above`` run only the spectral ops there (their cuFFT path is what such a case is for)."""
    params = []
    for name, (index, case), pattern, dtype in itertools.product(names, enumerate(cases), requires, DTYPES):
        if not (ON_GPU or index == 0 or (pattern == requires[0] and dtype == torch.float32)):
            continue
        shape, dim = case[0], case[1] if len(case) > 1 else 0
        if not ON_GPU and spectral_only_above and shape[dim] > spectral_only_above and "spectral" not in name:
            continue
        params.append(pytest.param(name, *case, pattern, dtype, id=f"{name}-{case[0]}-{pattern}-{dtype}"))
    return params


@pytest.mark.parametrize("name,shape,dim,transposed,requires,dtype",
                         _combinations(LOSS_CASES, LOSSES, list(REQUIRES), spectral_only_above=1024))
def test_loss_matches_float64_reference(name, shape, dim, transposed, requires, dtype):
    entry, kwargs = LOSSES[name]
    inputs = [t.detach().requires_grad_(r) for t, r in zip(_loss_inputs(name, shape, dtype, transposed),
                                                              REQUIRES[requires])]
    with ddkernels.use_backend("triton"):
        loss = entry(*inputs, dim=dim, **kwargs)
    grads = _gradients(loss, inputs)
    ref_inputs = [t.detach().double().requires_grad_(t.requires_grad) for t in inputs]
    expected = entry.call_reference(*ref_inputs, dim=dim, **kwargs)
    _compare(loss, grads, expected, _gradients(expected, ref_inputs), dtype, joint_second=name == "spectral_kl")


@pytest.mark.parametrize("form,shape,requires,dtype",
                         _combinations([(shape,) for shape in PAIRWISE_CASES], ["diversity", "matrix"], ["x", "none"]))
def test_pairwise_matches_float64_reference(form, shape, requires, dtype):
    x = _randn(shape, dtype).requires_grad_(requires == "x")
    entry = registry.OPS[f"pairwise_skl_{form}"]
    op, ref = functools.partial(entry, tau=0.5), functools.partial(entry.call_reference, tau=0.5)
    if form == "matrix":
        # A weighted sum of the matrix: every entry's gradient counts, each with its own upstream weight.
        weights = _randn((shape[0], shape[0]), torch.float64, seed=0).float()
        op = lambda t: (entry(t, tau=0.5) * weights).sum()  # noqa: E731
        ref = lambda t: (entry.call_reference(t, tau=0.5) * weights.double()).sum()  # noqa: E731
    with ddkernels.use_backend("triton"):
        loss = op(x)
    grads = _gradients(loss, [x])
    x64 = x.detach().double().requires_grad_(x.requires_grad)
    expected = ref(x64)
    _compare(loss, grads, expected, _gradients(expected, [x64]), dtype)


def _gradients(loss, inputs):
    """Gradients of UPSTREAM * loss for the inputs that require grad, None for the others."""
    wanted = [t for t in inputs if t.requires_grad]
    found = iter(torch.autograd.grad(loss * UPSTREAM, wanted) if wanted else [])
    return [next(found) if t.requires_grad else None for t in inputs]


def test_captured_distillation_iteration_matches_eager():
    """On a GPU: the distillation iteration as a CUDA graph (CapturedIteration: eager warm-up, capture, replays on
    segments that change every iteration) leaves both sets, their losses and step sizes where the eager iterations
    do. Without a GPU: --cuda-graph on is refused with the reason, and auto leaves the iteration eager."""
    from ddkernels.trainers import ddtime
    config = ddtime.resolve_config({"preset": "quick", "syn_lr": 0.01, "syn_steps": 7})
    if not ON_GPU:
        assert not ddtime.captures_iteration(config, DEVICE)
        with pytest.raises(ValueError, match="--cuda-graph on needs CUDA .* runs on cpu"):
            ddtime.captures_iteration(dict(config, cuda_graph="on"), DEVICE)
        return
    assert ddtime.captures_iteration(config, DEVICE)
    shape = (config["seq_len"], config["pred_len"], 5)
    initial = torch.randn(config["samples"], shape[2], shape[0] + shape[1], dtype=torch.float64).float()
    theta = ddtime.FlatParameters(ddtime.build_backbone("dlinear", config, shape)).flatten().to(DEVICE)
    def runs():
        return [ddtime.TrajectoryMatching(config, terms, initial, DEVICE, shape)
                for terms in ddtime.method_terms(config).values()]
    eager, captured = runs(), runs()
    replay = ddtime.CapturedIteration(captured)
    for iteration in range(ddtime.CapturedIteration.WARMUP + 3):
        start = theta + 0.01 * torch.randn(theta.shape, dtype=torch.float64).to(DEVICE, torch.float32)
        target = start + 0.01 * torch.randn(theta.shape, dtype=torch.float64).to(DEVICE, torch.float32)
        expected, got = ddtime.step_together(eager, start, target), replay(start, target)
        assert got == pytest.approx(expected, rel=1e-5)
    for a, b in zip(eager, captured):
        assert rel_error(b.synthetic, a.synthetic) < 1e-5
        assert b.step_size == pytest.approx(a.step_size, rel=1e-6)
