"""Compile every Triton kernel for an NVIDIA sm_90 target (ptxas included) without a GPU.

Run as a script without TRITON_INTERPRET (the interpreter accepts code that real compilation rejects: dtype
rules of tl.dot, scalar argument types, loop-carried types). Prints one line per kernel variant and exits
non-zero if any fails; tests/test_sm90_compile.py runs it in a subprocess. Variants compile with the launch options
(warps, pipeline stages) and tile shapes their host code uses on the issue shapes.

--resources also prints, per variant, registers per thread, spilled bytes (local memory per thread), the shared
memory Triton launches it with, and the matrix instructions of its products (kernels whose Triton IR has tt.dot).
They are read from the cubin with Triton's bundled cuobjdump (SASS: HGMMA/HMMA, and DMMA for float64, are
tensor-core instructions); without cuobjdump, from `ptxas -v` on the PTX and the PTX's mma/wgmma instructions,
and the header line says which. The last line is then exactly
    sm_90: N variants compiled, S with spills, T of P product kernels on tensor cores
"""
import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from ddkernels.kernels import multiscale_mse, pairwise_skl, spectral

TARGET = GPUTarget("cuda", 90, 32)
MULTISCALE_SHAPES = [(32, 336, 321), (256, 720, 21)]  # the issue shapes: [B, T, C], time along dim 1
SCALES = (1, 2, 4, 8)
# SASS opcodes of the tensor cores (warpgroup HGMMA on Hopper; warp-level HMMA; DMMA for float64; integer and fp8).
SASS_TENSOR_CORE = re.compile(r"\b(HGMMA|HMMA|DMMA|IMMA|IGMMA|QGMMA)\.")
PTX_TENSOR_CORE = re.compile(r"\b(wgmma\.mma_async|mma\.sync)\b")


def _cuda_tool(name):
    """Path of a CUDA binary as Triton finds it (its bundled copy, or TRITON_<NAME>_PATH), else on PATH, else None."""
    try:
        return getattr(triton.knobs.nvidia, name).path
    except RuntimeError:
        return shutil.which(name)


class Resources:
    """Registers, local memory, shared memory and tensor-core instructions of compiled kernels."""

    def __init__(self):
        self.cuobjdump = _cuda_tool("cuobjdump")
        self.ptxas = get_ptxas(TARGET.arch).path  # the one Triton compiles with: it accepts Triton's PTX
        self.source = ("SASS and resource usage of the cubin (cuobjdump)" if self.cuobjdump else
                       "ptxas -v on the PTX, and the PTX's mma/wgmma instructions (no cuobjdump here)")

    def of(self, compiled):
        """(registers, spilled bytes, shared bytes, is a product kernel, sorted tensor-core instructions)."""
        product = "tt.dot" in compiled.asm["ttir"]
        with tempfile.TemporaryDirectory() as folder:
            if self.cuobjdump:
                cubin = os.path.join(folder, "kernel.cubin")
                with open(cubin, "wb") as f:
                    f.write(compiled.asm["cubin"])
                usage = self._run(self.cuobjdump, "--dump-resource-usage", cubin)
                registers = int(re.search(r"REG:(\d+)", usage).group(1))
                spilled = int(re.search(r"LOCAL:(\d+)", usage).group(1))
                instructions = SASS_TENSOR_CORE.findall(self._run(self.cuobjdump, "--dump-sass", cubin))
            else:
                ptx = os.path.join(folder, "kernel.ptx")
                with open(ptx, "w") as f:
                    f.write(compiled.asm["ptx"])
                log = self._run(self.ptxas, "-v", f"--gpu-name=sm_{compiled.metadata.target.arch}a", ptx,
                                "-o", os.path.join(folder, "kernel.cubin"))
                registers = int(re.search(r"Used (\d+) registers", log).group(1))
                spilled = int(re.search(r"(\d+) bytes spill stores", log).group(1))
                instructions = PTX_TENSOR_CORE.findall(compiled.asm["ptx"])
        return registers, spilled, compiled.metadata.shared, product, sorted(set(instructions))

    @staticmethod
    def _run(*command):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return done.stdout + done.stderr


def compile_variant(kernel, types, constants, label, options=None):
    """The compiled kernel, or None after printing why it failed."""
    signature = {name: "constexpr" if name in constants else types(name) for name in kernel.arg_names}
    try:
        return triton.compile(ASTSource(kernel, signature, constants), target=TARGET, options=options)
    except Exception as exc:  # report every failure, then fail
        print(f"FAIL {label}: {str(exc).strip().splitlines()[-1]}", flush=True)
        return None


def spectral_types(data):
    def types(name):
        if name in ("x_ptr", "y_ptr", "s_ptr", "t_ptr", "out_ptr"):
            return "*" + data
        if name.endswith("_ptr"):
            return "*fp32"
        return "fp32" if name in ("norm_scale", "grad_scale", "zero_tol", "inv_tau", "scale") else "i32"
    return types


def pairwise_types(grad):
    def types(name):
        if name == "grad_ptr":
            return "*" + grad
        if name.endswith("_ptr"):
            return "*fp64"
        return "fp64" if name in ("inv_tau", "scale") else "i32"
    return types


def multiscale_types(data):
    def types(name):
        if name in ("x_ptr", "y_ptr", "grad_ptr"):
            return "*" + data
        if name.endswith("_ptr"):
            return "*fp32"
        return "fp32" if name[0] in "cnw" and name[1:].isdigit() else "i32"
    return types


def variants():
    """(kernel, argument types, constexprs, label, launch options) of every variant the host code launches."""
    tiles = dict(BLOCK_R=spectral.BLOCK_R, BLOCK_K=spectral.BLOCK_K, BLOCK_T=spectral.BLOCK_T,
                 PRECISION=spectral.PRECISION)
    # The multiscale tiles of the issue shapes, with the warps the launcher picks for them.
    multiscale_tiles = sorted({multiscale_mse._tile_shape(length, inner, SCALES)
                               for _, length, inner in MULTISCALE_SHAPES})
    padded_scales = dict(zip([f"S{i}" for i in range(multiscale_mse.MAX_SCALES)],
                             SCALES + (0,) * (multiscale_mse.MAX_SCALES - len(SCALES))))
    for data in ("fp32", "fp16", "bf16"):
        for amplitude, from_spectrum, first, second in itertools.product([False, True], repeat=4):
            yield (spectral._spectral_l1_fwd_kernel, spectral_types(data),
                   dict(tiles, AMPLITUDE=amplitude, FROM_SPECTRUM=from_spectrum, GRAD_FIRST=first, GRAD_SECOND=second),
                   f"spectral_l1 {data} amplitude={amplitude} from_spectrum={from_spectrum} grads=({first},{second})",
                   spectral.LAUNCH)
        for from_spectrum, first, second in itertools.product([False, True], repeat=3):
            yield (spectral._spectral_kl_fwd_kernel, spectral_types(data),
                   dict(tiles, FROM_SPECTRUM=from_spectrum, GRAD_FIRST=first, GRAD_SECOND=second),
                   f"spectral_kl {data} from_spectrum={from_spectrum} grads=({first},{second})", spectral.LAUNCH)
        # Weights as floats for every tile; weights in memory (a device tensor) on the first tile.
        multiscale = [(tile, grad, False) for tile, grad in itertools.product(multiscale_tiles, [False, True])]
        for (rows, block_t, block_i), compute_grad, in_memory in multiscale + [(multiscale_tiles[0], True, True)]:
            yield (multiscale_mse._multiscale_mse_fwd_kernel, multiscale_types(data),
                   dict(padded_scales, ROWS=rows, BLOCK_T=block_t, BLOCK_I=block_i, COMPUTE_GRAD=compute_grad,
                        WEIGHTS_IN_MEMORY=in_memory),
                   f"multiscale_mse {data} tile={rows}x{block_t}x{block_i} grad={compute_grad} "
                   f"weights_in_memory={in_memory}", dict(num_warps=multiscale_mse._num_warps(block_t, block_i)))
    # The adjoint reads G and writes dloss/dx in float32 for every input dtype.
    yield (spectral._spectral_adjoint_kernel, spectral_types("fp32"),
           dict(BLOCK_R=spectral.BLOCK_R, BLOCK_T=spectral.ADJOINT_BLOCK_T, BLOCK_K=spectral.ADJOINT_BLOCK_K,
                PRECISION=spectral.PRECISION), "spectral_adjoint", spectral.LAUNCH)
    yield spectral._sum_kernel, spectral_types("fp32"), dict(BLOCK=256), "spectral sum", None
    for in_memory in (False, True):
        yield (multiscale_mse._multiscale_mse_reduce_kernel, multiscale_types("fp32"),
               dict(NUM_SCALES=len(SCALES), BLOCK_P=128, WEIGHTS_IN_MEMORY=in_memory),
               f"multiscale reduce weights_in_memory={in_memory}", None)
    rows = dict(BLOCK_L=pairwise_skl.BLOCK_L)
    for kernel in (pairwise_skl._pairwise_row_lse_kernel, pairwise_skl._pairwise_column_means_kernel,
                   pairwise_skl._pairwise_center_kernel):
        yield kernel, pairwise_types("fp32"), rows, kernel.__name__, None
    products = dict(BLOCK_S=pairwise_skl.BLOCK_S, BLOCK_K=pairwise_skl.BLOCK_K, PRECISION=pairwise_skl.PRECISION)
    for with_matrix, with_weights in itertools.product([False, True], repeat=2):
        yield (pairwise_skl._pairwise_fwd_kernel, pairwise_types("fp32"),
               dict(products, WITH_MATRIX=with_matrix, WITH_WEIGHTS=with_weights),
               f"pairwise fwd matrix={with_matrix} weights={with_weights}", None)
    yield pairwise_skl._pairwise_bwd_products_kernel, pairwise_types("fp32"), products, "pairwise bwd products", None
    for grad in ("fp32", "fp64", "fp16", "bf16"):
        yield (pairwise_skl._pairwise_bwd_rows_kernel, pairwise_types(grad), rows, f"pairwise bwd rows grad={grad}",
               None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", action="store_true",
                        help="also print registers, spills, shared memory and tensor-core use of every variant")
    args = parser.parse_args(argv)
    resources = Resources() if args.resources else None
    print(f"triton {triton.__version__}, target sm_{TARGET.arch}"
          + (f"; resources from {resources.source}" if resources else ""), flush=True)
    compiled_count = failed = spilling = products = on_tensor_cores = 0
    for kernel, types, constants, label, options in variants():
        compiled = compile_variant(kernel, types, constants, label, options)
        if compiled is None:
            failed += 1
            continue
        compiled_count += 1
        if resources is None:
            print(f"ok   {label}", flush=True)
            continue
        registers, spilled, shared, product, instructions = resources.of(compiled)
        spilling += spilled > 0
        products += product
        on_tensor_cores += product and bool(instructions)
        tensor_cores = ("/".join(instructions) or "NONE") if product else "-"
        print(f"ok   {label:<72} warps {compiled.metadata.num_warps}  regs {registers:>3}  spill {spilled:>5} B  "
              f"shared {shared:>6} B  tensor cores {tensor_cores}", flush=True)
    if resources is None:
        print(f"{compiled_count} of {compiled_count + failed} kernel variants compiled for sm_90")
    else:
        print(f"sm_90: {compiled_count} variants compiled, {spilling} with spills, "
              f"{on_tensor_cores} of {products} product kernels on tensor cores")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
