"""pytest-benchmark: forward+backward of every op for ddkernels, eager and compile on the op's --quick shape of
`ddkernels bench` (CUDA when there is a GPU). Not part of the CI test command:

    pytest benchmarks --benchmark-only
"""
import pytest
import torch

import ddkernels
from ddkernels.bench import cases
from ddkernels.bench.report import shape_text

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("provider", cases.PROVIDERS)
@pytest.mark.parametrize("op_name", list(cases.OPS))
def test_forward_backward(benchmark, op_name, provider):
    op = cases.OPS[op_name]
    inputs = cases.make_inputs(op, op.quick_shape, DEVICE, torch.float32)
    fn = cases.provider_function(op, provider)

    def step():
        inputs[0].grad = None
        fn(*inputs).backward()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    benchmark.group = f"{op_name} {shape_text(op.quick_shape)} forward+backward"
    with ddkernels.use_backend("auto"):
        step()  # compiles under torch.compile
        benchmark(step)
