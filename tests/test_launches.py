"""The Triton (CUDA) path of every op reads nothing back to the host, so calls overlap with the training step and
can be captured in CUDA graphs. Without a GPU this is checked in Triton's interpreter (with the kernel launches the
docs/kernels.md states); on a GPU by capturing forward and backward in a CUDA graph, which fails on any sync."""
import pytest
import torch

import ddkernels
from ddkernels import registry
from ddkernels.bench import launches
from helpers import INTERPRETED, rel_error

# (forward, backward) launches of one call, the first tensor requiring grad: docs/kernels.md, "Backends".
LAUNCHES = {
    "multiscale_mse": (2, 1),
    "spectral_l1_complex": (3, 1),
    "spectral_l1_amplitude": (3, 1),
    "spectral_kl": (3, 1),
    "pairwise_skl_diversity": (11, 1),
    "pairwise_skl_matrix": (7, 9),
}
SHAPES = {False: (4, 96, 7), True: (8, 7, 96)}


def test_every_op_is_listed():
    assert set(LAUNCHES) == set(registry.OPS)


def _captured_call(function, tensors, upstream):
    """Forward and backward captured in one CUDA graph, replayed; (output, gradient of the first tensor)."""
    with ddkernels.use_backend("triton"):
        stream = torch.cuda.Stream()  # warm-up on a side stream: compilation and caches outside the capture
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            output = function(*tensors)
            output.backward(torch.full_like(output, upstream))
        torch.cuda.current_stream().wait_stream(stream)
        tensors[0].grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = function(*tensors)
            output.backward(torch.full_like(output, upstream))
    graph.replay()
    torch.cuda.synchronize()
    return output, tensors[0].grad


@pytest.mark.parametrize("name", list(registry.OPS))
@pytest.mark.parametrize("upstream", [1.0, -0.7])
def test_no_host_reads(name, upstream):
    entry = registry.OPS[name]
    if INTERPRETED:
        watches = launches.count(entry, SHAPES[entry.samples], upstream)
        assert [w.host_reads for w in watches.values()] == [[], []]
        assert (watches["forward"].launches, watches["backward"].launches) == LAUNCHES[name], watches
        return
    tensors = entry.make_inputs(SHAPES[entry.samples], torch.float32, "cuda")
    output, grad = _captured_call(entry, tensors, upstream)
    expected = [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]
    with ddkernels.use_backend("triton"):
        eager = entry(*expected)
    eager.backward(torch.full_like(eager, upstream))
    assert rel_error(output, eager) < 1e-6 and rel_error(grad, expected[0].grad) < 1e-6


@pytest.mark.parametrize("scales", [(1, 2, 4, 8), (3, 1, 5)])
def test_multiscale_weight_tensor_is_not_read_on_the_host(scales):
    """Weights given as a tensor on the input's device (learnable scale weights) reach the kernels as they are."""
    entry = registry.OPS["multiscale_mse"]
    weights = torch.linspace(0.2, 0.9, len(scales), dtype=torch.float64).requires_grad_()
    if INTERPRETED:
        watches = launches.count(entry, SHAPES[False], -0.7, scales=scales, weights=weights)
        assert [w.host_reads for w in watches.values()] == [[], []]
        return
    tensors = entry.make_inputs(SHAPES[False], torch.float32, "cuda")
    weights = weights.detach().cuda()
    output, grad = _captured_call(lambda *t: entry(*t, scales=scales, weights=weights), tensors, -0.7)
    expected = [t.detach().clone().requires_grad_(t.requires_grad) for t in tensors]
    with ddkernels.use_backend("triton"):
        eager = entry(*expected, scales=scales, weights=weights.tolist())
    eager.backward(torch.full_like(eager, -0.7))
    assert rel_error(output, eager) < 1e-6 and rel_error(grad, expected[0].grad) < 1e-6
