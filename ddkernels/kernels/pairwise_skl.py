"""Triton kernels of the pairwise softmax symmetric KL, at O(S*L + S^2) memory.

    rho = p - mean_i p, alpha = log p - mean_i log p;  N = rho alpha^T
    D_ij = g_i + g_j - N_ij - N_ji, g_i = <rho_i, alpha_i>;  forward tiles of D, upper triangle only, exp(-D) and
    the reduction in the epilogue; weights V written with their transposes.
Everything in float64, the products on float64 tensor cores: for a nearly identical pair among distinct samples D
is a 1e-6 difference of O(1) products, beyond float32 (and tf32x3) products.
    backward: dloss/dx_i = (r_i rho_i - (V rho)_i + p_i (u_i - <p_i, u_i>)) / tau, u_i = r_i alpha_i - (V alpha)_i,
    V = dloss/dD + its transpose, r = V 1; the diversity's gradient is computed in its forward call.
"""
import torch
import triton
import triton.language as tl

from ddkernels._tensors import accumulate_dtype

PRECISION = "ieee"
BLOCK_L = 256           # row-statistics kernels: elements of a sample per step
BLOCK_S, BLOCK_K = 32, 32   # product kernels: samples x samples tiles, reduced over BLOCK_K values


@triton.jit
def _pairwise_row_lse_kernel(x_ptr, lse_ptr, length, inv_tau: tl.float64, BLOCK_L: tl.constexpr):
    """lse_i = log sum_k exp(x_ik / tau), online over blocks, in float64."""
    row = tl.program_id(0).to(tl.int64) * length
    top = tl.full([BLOCK_L], float("-inf"), dtype=tl.float64)
    total = tl.zeros([BLOCK_L], dtype=tl.float64)
    for k0 in range(0, length, BLOCK_L):
        k = k0 + tl.arange(0, BLOCK_L)
        a = tl.load(x_ptr + row + k, mask=k < length, other=float("-inf")).to(tl.float64) * inv_tau
        new_top = tl.maximum(top, a)
        total = total * tl.exp(tl.where(new_top == float("-inf"), 0.0, top - new_top)) + tl.where(
            a == float("-inf"), 0.0, tl.exp(a - new_top))
        top = new_top
    row_top = tl.max(top, axis=0)
    row_total = tl.sum(total * tl.exp(tl.where(top == float("-inf"), float("-inf"), top - row_top)), axis=0)
    tl.store(lse_ptr + tl.program_id(0), row_top + tl.log(row_total))


@triton.jit
def _pairwise_column_means_kernel(x_ptr, lse_ptr, mean_l_ptr, mean_p_ptr, samples, length, inv_tau: tl.float64,
                                  BLOCK_L: tl.constexpr):
    """mean over samples of log p and of p, per column block, in float64."""
    k = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    mask = k < length
    sum_l = tl.zeros([BLOCK_L], dtype=tl.float64)
    sum_p = tl.zeros([BLOCK_L], dtype=tl.float64)
    row = tl.zeros([], dtype=tl.int64)  # i * length in int64: S * L may pass 2^31
    for i in range(0, samples):
        l = tl.load(x_ptr + row + k, mask=mask, other=0.0).to(tl.float64) * inv_tau - tl.load(lse_ptr + i)
        row += length
        sum_l += l
        sum_p += tl.exp(l)
    tl.store(mean_l_ptr + k, sum_l / samples, mask=mask)
    tl.store(mean_p_ptr + k, sum_p / samples, mask=mask)


@triton.jit
def _pairwise_center_kernel(x_ptr, lse_ptr, mean_l_ptr, mean_p_ptr, rho_ptr, alpha_ptr, g_ptr, length,
                            inv_tau: tl.float64,
                            BLOCK_L: tl.constexpr):
    """rho_i = p_i - mean p, alpha_i = log p_i - mean log p, g_i = <rho_i, alpha_i>."""
    i = tl.program_id(0)
    row = i.to(tl.int64) * length
    lse = tl.load(lse_ptr + i)
    dot = tl.zeros([BLOCK_L], dtype=tl.float64)
    for k0 in range(0, length, BLOCK_L):
        k = k0 + tl.arange(0, BLOCK_L)
        mask = k < length
        l = tl.load(x_ptr + row + k, mask=mask, other=0.0).to(tl.float64) * inv_tau - lse
        rho = tl.exp(l) - tl.load(mean_p_ptr + k, mask=mask, other=0.0)
        alpha = l - tl.load(mean_l_ptr + k, mask=mask, other=0.0)
        tl.store(rho_ptr + row + k, rho, mask=mask)
        tl.store(alpha_ptr + row + k, alpha, mask=mask)
        dot += tl.where(mask, rho * alpha, 0.0)
    tl.store(g_ptr + i, tl.sum(dot, axis=0))


@triton.jit
def _pairwise_fwd_kernel(rho_ptr, alpha_ptr, g_ptr, d_ptr, w_ptr, partial_ptr, samples, length, n_blocks,
                         scale: tl.float64,
                         WITH_MATRIX: tl.constexpr, WITH_WEIGHTS: tl.constexpr, BLOCK_S: tl.constexpr,
                         BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """One upper-triangle tile (bi <= bj) of D: N_ij and N_ji from two products; exp(-D) over pairs i < j summed
    twice; D and V = scale * exp(-D) written with their mirror tiles (0 on the diagonal)."""
    pid = tl.program_id(0)
    bi = pid // n_blocks
    bj = pid % n_blocks
    if bj >= bi:
        i = bi * BLOCK_S + tl.arange(0, BLOCK_S)
        j = bj * BLOCK_S + tl.arange(0, BLOCK_S)
        i_ok, j_ok = i < samples, j < samples
        i64, j64 = i.to(tl.int64), j.to(tl.int64)
        n_ij = tl.zeros([BLOCK_S, BLOCK_S], dtype=tl.float64)
        n_ji = tl.zeros([BLOCK_S, BLOCK_S], dtype=tl.float64)
        for k0 in range(0, length, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_ok = k < length
            rho_i = tl.load(rho_ptr + i64[:, None] * length + k[None, :], mask=i_ok[:, None] & k_ok[None, :], other=0.0)
            alpha_i = tl.load(alpha_ptr + i64[:, None] * length + k[None, :], mask=i_ok[:, None] & k_ok[None, :],
                              other=0.0)
            rho_j = tl.load(rho_ptr + j64[None, :] * length + k[:, None], mask=j_ok[None, :] & k_ok[:, None], other=0.0)
            alpha_j = tl.load(alpha_ptr + j64[None, :] * length + k[:, None], mask=j_ok[None, :] & k_ok[:, None],
                              other=0.0)
            n_ij = tl.dot(rho_i, alpha_j, n_ij, input_precision=PRECISION, out_dtype=tl.float64)
            n_ji = tl.dot(alpha_i, rho_j, n_ji, input_precision=PRECISION, out_dtype=tl.float64)
        g_i = tl.load(g_ptr + i, mask=i_ok, other=0.0)
        g_j = tl.load(g_ptr + j, mask=j_ok, other=0.0)
        # Both sums commute exactly, so the mirror tile gets exactly the transposed D.
        d = (g_i[:, None] + g_j[None, :]) - (n_ij + n_ji)
        # Pairs i < j only (the whole tile off the diagonal): each written once, to both halves of D and V.
        upper = i_ok[:, None] & j_ok[None, :] & (i[:, None] < j[None, :])
        e = tl.where(upper, tl.exp(-d), 0.0)
        tl.store(partial_ptr + pid, 2.0 * tl.sum(tl.sum(e, axis=1), axis=0))
        mask = i_ok[:, None] & j_ok[None, :] & (i[:, None] <= j[None, :])
        direct = i64[:, None] * samples + j64[None, :]
        mirror = j64[None, :] * samples + i64[:, None]
        if WITH_MATRIX:
            d = tl.where(upper, d, 0.0)
            tl.store(d_ptr + direct, d, mask=mask)
            tl.store(d_ptr + mirror, d, mask=mask)
        if WITH_WEIGHTS:
            w = scale * e
            tl.store(w_ptr + direct, w, mask=mask)
            tl.store(w_ptr + mirror, w, mask=mask)
    else:
        tl.store(partial_ptr + pid, 0.0)


@triton.jit
def _pairwise_bwd_products_kernel(w_ptr, rho_ptr, alpha_ptr, v_rho_ptr, v_alpha_ptr, samples, length,
                                  BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """(V rho)_i and (V alpha)_i for a [BLOCK_S, BLOCK_K] tile."""
    k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)  # axis 0: L may need more than 65535 blocks
    i = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)
    i_ok, k_ok = i < samples, k < length
    i64 = i.to(tl.int64)
    v_rho = tl.zeros([BLOCK_S, BLOCK_K], dtype=tl.float64)
    v_alpha = tl.zeros([BLOCK_S, BLOCK_K], dtype=tl.float64)
    for j0 in range(0, samples, BLOCK_S):
        j = j0 + tl.arange(0, BLOCK_S)
        j_ok = j < samples
        j64 = j.to(tl.int64)
        w = tl.load(w_ptr + i64[:, None] * samples + j64[None, :], mask=i_ok[:, None] & j_ok[None, :], other=0.0)
        tile = j64[:, None] * length + k[None, :]
        tile_mask = j_ok[:, None] & k_ok[None, :]
        rho_tile = tl.load(rho_ptr + tile, mask=tile_mask, other=0.0)
        alpha_tile = tl.load(alpha_ptr + tile, mask=tile_mask, other=0.0)
        v_rho = tl.dot(w, rho_tile, v_rho, input_precision=PRECISION, out_dtype=tl.float64)
        v_alpha = tl.dot(w, alpha_tile, v_alpha, input_precision=PRECISION, out_dtype=tl.float64)
    out = i64[:, None] * length + k[None, :]
    mask = i_ok[:, None] & k_ok[None, :]
    tl.store(v_rho_ptr + out, v_rho, mask=mask)
    tl.store(v_alpha_ptr + out, v_alpha, mask=mask)


@triton.jit
def _row_terms(x_ptr, rho_ptr, alpha_ptr, v_rho_ptr, v_alpha_ptr, row, k, mask, lse, r, inv_tau: tl.float64):
    """p, u = r alpha - V alpha and r rho - V rho at one block of a row, in float64 (both differences cancel)."""
    p = tl.exp(tl.load(x_ptr + row + k, mask=mask, other=0.0).to(tl.float64) * inv_tau - lse)
    u = r * tl.load(alpha_ptr + row + k, mask=mask, other=0.0).to(tl.float64) - tl.load(
        v_alpha_ptr + row + k, mask=mask, other=0.0).to(tl.float64)
    direct = r * tl.load(rho_ptr + row + k, mask=mask, other=0.0).to(tl.float64) - tl.load(
        v_rho_ptr + row + k, mask=mask, other=0.0).to(tl.float64)
    return p, u, direct


@triton.jit
def _pairwise_bwd_rows_kernel(x_ptr, lse_ptr, r_ptr, rho_ptr, alpha_ptr, v_rho_ptr, v_alpha_ptr, grad_ptr,
                              length, inv_tau: tl.float64, BLOCK_L: tl.constexpr):
    """grad_i = (r_i rho_i - (V rho)_i + p_i (u_i - <p_i, u_i>)) / tau."""
    i = tl.program_id(0)
    row = i.to(tl.int64) * length
    lse = tl.load(lse_ptr + i)
    r = tl.load(r_ptr + i)
    inner = tl.zeros([BLOCK_L], dtype=tl.float64)
    for k0 in range(0, length, BLOCK_L):
        k = k0 + tl.arange(0, BLOCK_L)
        mask = k < length
        p, u, _ = _row_terms(x_ptr, rho_ptr, alpha_ptr, v_rho_ptr, v_alpha_ptr, row, k, mask, lse, r, inv_tau)
        inner += tl.where(mask, p * u, 0.0)
    s = tl.sum(inner, axis=0)
    for k0 in range(0, length, BLOCK_L):
        k = k0 + tl.arange(0, BLOCK_L)
        mask = k < length
        p, u, direct = _row_terms(x_ptr, rho_ptr, alpha_ptr, v_rho_ptr, v_alpha_ptr, row, k, mask, lse, r, inv_tau)
        grad = (direct + p * (u - s)) * inv_tau
        tl.store(grad_ptr + row + k, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _prepare(x2, tau):
    """(rho, alpha, g, lse) of the samples x2 (contiguous [S, L] float64)."""
    samples, length = x2.shape
    device = x2.device
    lse = torch.empty(samples, dtype=torch.float64, device=device)
    mean_l = torch.empty(length, dtype=torch.float64, device=device)
    mean_p = torch.empty(length, dtype=torch.float64, device=device)
    rho, alpha = torch.empty_like(x2), torch.empty_like(x2)
    g = torch.empty(samples, dtype=torch.float64, device=device)
    inv_tau = 1.0 / tau
    _pairwise_row_lse_kernel[(samples,)](x2, lse, length, inv_tau, BLOCK_L=BLOCK_L)
    _pairwise_column_means_kernel[(triton.cdiv(length, BLOCK_L),)](x2, lse, mean_l, mean_p, samples, length, inv_tau,
                                                                  BLOCK_L=BLOCK_L)
    _pairwise_center_kernel[(samples,)](x2, lse, mean_l, mean_p, rho, alpha, g, length, inv_tau, BLOCK_L=BLOCK_L)
    return rho, alpha, g, lse


def _products(rho, alpha, g, with_matrix, weight_scale):
    """(sum over i != j of exp(-D_ij) as a 0-d tensor, D or None, V = weight_scale exp(-D) or None)."""
    samples, length = rho.shape
    n_blocks = triton.cdiv(samples, BLOCK_S)
    partial = torch.empty(n_blocks * n_blocks, dtype=torch.float64, device=rho.device)
    d = torch.empty((samples, samples), dtype=torch.float64, device=rho.device) if with_matrix else None
    weights = torch.empty((samples, samples), dtype=torch.float64, device=rho.device) if weight_scale is not None \
        else None
    _pairwise_fwd_kernel[(n_blocks * n_blocks,)](
        rho, alpha, g, partial if d is None else d, partial if weights is None else weights, partial, samples,
        length, n_blocks, 0.0 if weight_scale is None else weight_scale,
        WITH_MATRIX=with_matrix, WITH_WEIGHTS=weights is not None, BLOCK_S=BLOCK_S, BLOCK_K=BLOCK_K,
        PRECISION=PRECISION)
    return partial.sum(dtype=torch.float64), d, weights


def _gradient(x2, tau, rho, alpha, lse, weights, shape, dtype):
    """dloss/dx for symmetric weights V, shaped ``shape`` of ``dtype``."""
    samples, length = x2.shape
    row_sums = weights.sum(1, dtype=torch.float64)
    v_rho, v_alpha = torch.empty_like(rho), torch.empty_like(rho)
    grid = (triton.cdiv(length, BLOCK_K), triton.cdiv(samples, BLOCK_S))
    _pairwise_bwd_products_kernel[grid](weights, rho, alpha, v_rho, v_alpha, samples, length,
                                        BLOCK_S=BLOCK_S, BLOCK_K=BLOCK_K, PRECISION=PRECISION)
    grad = torch.empty(shape, dtype=dtype, device=x2.device)
    _pairwise_bwd_rows_kernel[(samples,)](x2, lse, row_sums, rho, alpha, v_rho, v_alpha, grad, length, 1.0 / tau,
                                          BLOCK_L=BLOCK_L)
    return grad


def _samples(x):
    return x.reshape(x.shape[0], -1).to(torch.float64).contiguous()


def pairwise_skl_diversity(x, tau, compute_grad):
    """(the mean over i != j of exp(-D_ij), dloss/dx or an empty tensor), both of x's accumulate dtype."""
    x2 = _samples(x)
    rho, alpha, g, lse = _prepare(x2, tau)
    pairs = x.shape[0] * (x.shape[0] - 1)
    # V = 2 dloss/dD (D and its weights are symmetric), dloss/dD_ij = -exp(-D_ij) / pairs.
    total, _, weights = _products(rho, alpha, g, False, -2.0 / pairs if compute_grad else None)
    loss = (total / pairs).to(accumulate_dtype(x.dtype))
    if not compute_grad:
        return loss, x.new_empty(0, dtype=accumulate_dtype(x.dtype))
    return loss, _gradient(x2, tau, rho, alpha, lse, weights, x.shape, accumulate_dtype(x.dtype))


def pairwise_skl_matrix(x, tau):
    """D [S, S] of x's accumulate dtype."""
    rho, alpha, g, _ = _prepare(_samples(x), tau)
    return _products(rho, alpha, g, True, None)[1].to(accumulate_dtype(x.dtype))


def pairwise_skl_matrix_backward(x, tau, grad_d):
    """dloss/dx of x's dtype and shape for dloss/dD = grad_d."""
    x2 = _samples(x)
    rho, alpha, _, lse = _prepare(x2, tau)
    weights = (grad_d + grad_d.t()).to(torch.float64).contiguous()
    return _gradient(x2, tau, rho, alpha, lse, weights, x.shape, x.dtype)
