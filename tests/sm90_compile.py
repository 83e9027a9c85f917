"""Compile every Triton kernel for an NVIDIA sm_90 target (ptxas included) without a GPU.

Run as a script without TRITON_INTERPRET (the interpreter accepts code that real compilation rejects: dtype
rules of tl.dot, scalar argument types, loop-carried types). Prints one line per kernel variant and exits
non-zero if any fails; tests/test_sm90_compile.py runs it in a subprocess.
"""
import itertools
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ddkernels.kernels import multiscale_mse, pairwise_skl, spectral

TARGET = GPUTarget("cuda", 90, 32)


def compile_variant(kernel, types, constants, label):
    signature = {name: "constexpr" if name in constants else types(name) for name in kernel.arg_names}
    try:
        triton.compile(ASTSource(kernel, signature, constants), target=TARGET)
    except Exception as exc:  # report every failure, then fail
        print(f"FAIL {label}: {str(exc).strip().splitlines()[-1]}")
        return False
    print(f"ok   {label}")
    return True


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
        if name == "upstream_ptr":
            return "*fp32"
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


def main():
    results = []
    tiles = dict(BLOCK_R=spectral.BLOCK_R, BLOCK_K=spectral.BLOCK_K, BLOCK_T=spectral.BLOCK_T,
                 PRECISION=spectral.PRECISION)
    for data in ("fp32", "fp16", "bf16"):
        for amplitude, from_spectrum, first, second in itertools.product([False, True], repeat=4):
            results.append(compile_variant(
                spectral._spectral_l1_fwd_kernel, spectral_types(data),
                dict(tiles, AMPLITUDE=amplitude, FROM_SPECTRUM=from_spectrum, GRAD_FIRST=first, GRAD_SECOND=second),
                f"spectral_l1 {data} amplitude={amplitude} from_spectrum={from_spectrum} grads=({first},{second})"))
        for from_spectrum, first, second in itertools.product([False, True], repeat=3):
            results.append(compile_variant(
                spectral._spectral_kl_fwd_kernel, spectral_types(data),
                dict(tiles, FROM_SPECTRUM=from_spectrum, GRAD_FIRST=first, GRAD_SECOND=second),
                f"spectral_kl {data} from_spectrum={from_spectrum} grads=({first},{second})"))
        results.append(compile_variant(
            spectral._spectral_adjoint_kernel, spectral_types(data),
            dict(BLOCK_R=spectral.BLOCK_R, BLOCK_T=spectral.ADJOINT_BLOCK_T, BLOCK_K=spectral.ADJOINT_BLOCK_K,
                 PRECISION=spectral.PRECISION), f"spectral_adjoint {data}"))
        results.append(compile_variant(
            multiscale_mse._multiscale_mse_fwd_kernel, multiscale_types(data),
            dict(S0=1, S1=2, S2=4, S3=8, S4=0, S5=0, S6=0, S7=0, ROWS=64, BLOCK_T=64, BLOCK_I=16, COMPUTE_GRAD=True),
            f"multiscale_mse {data}"))
    results.append(compile_variant(spectral._sum_kernel, spectral_types("fp32"), dict(BLOCK=256), "spectral sum"))
    results.append(compile_variant(multiscale_mse._multiscale_mse_reduce_kernel, multiscale_types("fp32"),
                                   dict(NUM_SCALES=4, BLOCK_P=128), "multiscale reduce"))
    rows = dict(BLOCK_L=pairwise_skl.BLOCK_L)
    for kernel in (pairwise_skl._pairwise_row_lse_kernel, pairwise_skl._pairwise_column_means_kernel,
                   pairwise_skl._pairwise_center_kernel):
        results.append(compile_variant(kernel, pairwise_types("fp32"), rows, kernel.__name__))
    products = dict(BLOCK_S=pairwise_skl.BLOCK_S, BLOCK_K=pairwise_skl.BLOCK_K, PRECISION=pairwise_skl.PRECISION)
    for with_matrix, with_weights in itertools.product([False, True], repeat=2):
        results.append(compile_variant(pairwise_skl._pairwise_fwd_kernel, pairwise_types("fp32"),
                                       dict(products, WITH_MATRIX=with_matrix, WITH_WEIGHTS=with_weights),
                                       f"pairwise fwd matrix={with_matrix} weights={with_weights}"))
    results.append(compile_variant(pairwise_skl._pairwise_bwd_products_kernel, pairwise_types("fp32"), products,
                                   "pairwise bwd products"))
    for grad in ("fp32", "fp64", "fp16", "bf16"):
        results.append(compile_variant(pairwise_skl._pairwise_bwd_rows_kernel, pairwise_types(grad), rows,
                                       f"pairwise bwd rows grad={grad}"))
    print(f"{sum(results)} of {len(results)} kernel variants compiled for sm_90")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
