"""Triton kernels of the multi-scale pooling MSE.

    loss = sum_s w_s * mean_b p_sb^2,  p_sb = mean of d = input - target over block b (s steps along time)
    grad_t = sum_s c_s * p_{s, t // s},  c_s = 2 w_s / (count_s * s)   (0 in a dropped remainder)
One pass: each program walks tiles of [ROWS, BLOCK_I] (time x inner columns) of d, ROWS a multiple of every
scale so no block crosses a tile; per scale a segmented scan gives each block's sum, gathered back to its
steps. Partial sums of p^2 go to a [programs, 8] buffer that a second, single-program kernel reduces.
Weights given as floats are folded into the kernels' scalar arguments; weights given as a device tensor are read
by the kernels (WEIGHTS_IN_MEMORY), so the call never reads a device value on the host.
"""
import functools
import math

import torch
import triton
import triton.language as tl

from ddkernels._tensors import accumulate_dtype, as_3d

MAX_SCALES = 8
MAX_TILE_ROWS = 16384


@triton.jit
def _segment_sum(a_value, a_start, b_value, b_start):
    return tl.where(b_start, b_value, a_value + b_value), a_start | b_start


@triton.jit
def _block_means(d, r, S: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_I: tl.constexpr):
    """Each step's block mean for blocks of S steps aligned to local row 0."""
    if S == 1:
        return d
    starts = tl.broadcast_to((r % S) == 0, (BLOCK_T, BLOCK_I))
    sums, _ = tl.associative_scan((d, starts), 0, _segment_sum)
    ends = tl.broadcast_to(tl.minimum((r // S) * S + S - 1, BLOCK_T - 1), (BLOCK_T, BLOCK_I))
    return tl.gather(sums, ends, 0) / S


@triton.jit
def _scale_term(d, r, t, valid, length, grad, acc, coef, weight_ptr, K: tl.constexpr, S: tl.constexpr,
                BLOCK_T: tl.constexpr, BLOCK_I: tl.constexpr, WEIGHTS_IN_MEMORY: tl.constexpr):
    if WEIGHTS_IN_MEMORY:
        coef = coef * tl.load(weight_ptr + K).to(tl.float32)
    pooled = _block_means(d, r, S, BLOCK_T, BLOCK_I)
    pooled = tl.where(valid & (t < (length // S) * S), pooled, 0.0)
    return grad + coef * pooled, acc + tl.sum(pooled * pooled) / S


@triton.jit
def _multiscale_mse_fwd_kernel(
    x_ptr, y_ptr, grad_ptr, partial_ptr, weight_ptr,
    length, inner, x_so, x_st, x_si, y_so, y_st, y_si,
    n_col_blocks, n_splits, tiles_per_split, n_tiles,
    c0, c1, c2, c3, c4, c5, c6, c7,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr, S3: tl.constexpr,
    S4: tl.constexpr, S5: tl.constexpr, S6: tl.constexpr, S7: tl.constexpr,
    ROWS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_I: tl.constexpr, COMPUTE_GRAD: tl.constexpr,
    WEIGHTS_IN_MEMORY: tl.constexpr,
):
    """c_k: 2 w_k / (count_k s_k), or 2 / (count_k s_k) with w_k read from weight_ptr (WEIGHTS_IN_MEMORY)."""
    pid = tl.program_id(0)
    split = pid % n_splits
    rest = pid // n_splits
    col_block = rest % n_col_blocks
    o = (rest // n_col_blocks).to(tl.int64)
    r = tl.arange(0, BLOCK_T)[:, None]
    i = col_block * BLOCK_I + tl.arange(0, BLOCK_I)[None, :]
    col_ok = i < inner
    x_base = x_ptr + o * x_so + i.to(tl.int64) * x_si
    y_base = y_ptr + o * y_so + i.to(tl.int64) * y_si
    g_base = grad_ptr + o * length * inner + i
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    a4 = 0.0
    a5 = 0.0
    a6 = 0.0
    a7 = 0.0
    tile_begin = split * tiles_per_split
    tile_end = tl.minimum(tile_begin + tiles_per_split, n_tiles)
    for tile in range(tile_begin, tile_end):
        t = tile * ROWS + r
        valid = (r < ROWS) & (t < length) & col_ok
        t64 = t.to(tl.int64)
        xv = tl.load(x_base + t64 * x_st, mask=valid, other=0.0).to(tl.float32)
        yv = tl.load(y_base + t64 * y_st, mask=valid, other=0.0).to(tl.float32)
        d = xv - yv
        g = tl.zeros([BLOCK_T, BLOCK_I], dtype=tl.float32)
        g, a0 = _scale_term(d, r, t, valid, length, g, a0, c0, weight_ptr, 0, S0, BLOCK_T, BLOCK_I, WEIGHTS_IN_MEMORY)
        if S1 > 0:
            g, a1 = _scale_term(d, r, t, valid, length, g, a1, c1, weight_ptr, 1, S1, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S2 > 0:
            g, a2 = _scale_term(d, r, t, valid, length, g, a2, c2, weight_ptr, 2, S2, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S3 > 0:
            g, a3 = _scale_term(d, r, t, valid, length, g, a3, c3, weight_ptr, 3, S3, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S4 > 0:
            g, a4 = _scale_term(d, r, t, valid, length, g, a4, c4, weight_ptr, 4, S4, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S5 > 0:
            g, a5 = _scale_term(d, r, t, valid, length, g, a5, c5, weight_ptr, 5, S5, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S6 > 0:
            g, a6 = _scale_term(d, r, t, valid, length, g, a6, c6, weight_ptr, 6, S6, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if S7 > 0:
            g, a7 = _scale_term(d, r, t, valid, length, g, a7, c7, weight_ptr, 7, S7, BLOCK_T, BLOCK_I,
                                WEIGHTS_IN_MEMORY)
        if COMPUTE_GRAD:
            tl.store(g_base + t64 * inner, g.to(grad_ptr.dtype.element_ty), mask=valid)
    out = partial_ptr + pid.to(tl.int64) * 8
    tl.store(out + 0, a0)
    tl.store(out + 1, a1)
    tl.store(out + 2, a2)
    tl.store(out + 3, a3)
    tl.store(out + 4, a4)
    tl.store(out + 5, a5)
    tl.store(out + 6, a6)
    tl.store(out + 7, a7)


@triton.jit
def _scale_mse(total, k, K: tl.constexpr, inv_count, weight, weight_ptr, per_scale_ptr, loss,
               WEIGHTS_IN_MEMORY: tl.constexpr):
    mse = tl.sum(tl.where(k == K, total, 0.0)) * inv_count
    tl.store(per_scale_ptr + K, mse.to(per_scale_ptr.dtype.element_ty))
    if WEIGHTS_IN_MEMORY:
        weight = tl.load(weight_ptr + K).to(tl.float32)
    return loss + weight * mse


@triton.jit
def _multiscale_mse_reduce_kernel(partial_ptr, per_scale_ptr, loss_ptr, weight_ptr, n_programs,
                                  n0, n1, n2, n3, n4, n5, n6, n7, w0, w1, w2, w3, w4, w5, w6, w7,
                                  NUM_SCALES: tl.constexpr, BLOCK_P: tl.constexpr, WEIGHTS_IN_MEMORY: tl.constexpr):
    """Sum the programs' partial sums; per_scale[k] = sum_k * n_k (n_k = 1 / count_k); loss = sum_k w_k per_scale[k]
    (w_k read from weight_ptr when WEIGHTS_IN_MEMORY)."""
    k = tl.arange(0, 8)
    total = tl.zeros([8], dtype=tl.float32)
    for start in range(0, n_programs, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        block = tl.load(partial_ptr + p[:, None] * 8 + k[None, :], mask=p[:, None] < n_programs, other=0.0)
        total += tl.sum(block, axis=0)
    loss = _scale_mse(total, k, 0, n0, w0, weight_ptr, per_scale_ptr, 0.0, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 1:
        loss = _scale_mse(total, k, 1, n1, w1, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 2:
        loss = _scale_mse(total, k, 2, n2, w2, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 3:
        loss = _scale_mse(total, k, 3, n3, w3, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 4:
        loss = _scale_mse(total, k, 4, n4, w4, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 5:
        loss = _scale_mse(total, k, 5, n5, w5, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 6:
        loss = _scale_mse(total, k, 6, n6, w6, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    if NUM_SCALES > 7:
        loss = _scale_mse(total, k, 7, n7, w7, weight_ptr, per_scale_ptr, loss, WEIGHTS_IN_MEMORY)
    tl.store(loss_ptr, loss.to(loss_ptr.dtype.element_ty))


def _tile_shape(length, inner, scales):
    """(ROWS, BLOCK_T, BLOCK_I): ROWS steps per tile, a multiple of every scale (or the whole length)."""
    period = math.lcm(*scales)
    block_i = min(triton.next_power_of_2(inner), 64)
    if period >= length:
        rows = length
    else:
        target = max(triton.next_power_of_2(period), min(1024, triton.next_power_of_2(max(4096 // block_i, 1))))
        target = min(target, triton.next_power_of_2(length))
        rows = max(target // period, 1) * period
    if rows > MAX_TILE_ROWS:
        raise ValueError(f"scales: the triton backend needs lcm(scales) = {period} or the length ({length}) to be "
                         f"at most {MAX_TILE_ROWS}; use the cpu or reference backend")
    block_t = triton.next_power_of_2(rows)
    block_i = max(1, min(block_i, triton.next_power_of_2(max(16384 // block_t, 1))))
    return rows, block_t, block_i


def _num_warps(block_t, block_i):
    """Warps of the forward kernel for a [BLOCK_T, BLOCK_I] tile."""
    return 4 if block_t * block_i <= 4096 else 8


@functools.lru_cache(maxsize=None)
def _target_programs(device):
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _program_grid(outer, n_col_blocks, n_tiles, device):
    """Split time across programs when outer x column blocks alone leaves the GPU under-filled."""
    target = _target_programs(device)
    n_splits = max(1, min(n_tiles, target // max(outer * n_col_blocks, 1)))
    tiles_per_split = triton.cdiv(n_tiles, n_splits)
    n_splits = triton.cdiv(n_tiles, tiles_per_split)
    return n_splits, tiles_per_split


def multiscale_mse(input, target, dim, scales, weights, compute_grad):
    """(loss, per_scale_mse, grad_input) of the multi-scale MSE, grad_input empty when not computed; ``weights``:
    floats, or a 1-d tensor on the input's device (read by the kernels)."""
    x, y = as_3d(input, dim), as_3d(target, dim)
    outer, length, inner = x.shape
    rows, block_t, block_i = _tile_shape(length, inner, scales)
    n_col_blocks = triton.cdiv(inner, block_i)
    n_tiles = triton.cdiv(length, rows)
    n_splits, tiles_per_split = _program_grid(outer, n_col_blocks, n_tiles, input.device)
    n_programs = outer * n_col_blocks * n_splits
    in_memory = isinstance(weights, torch.Tensor)
    host_weights = [1.0] * len(scales) if in_memory else list(weights)
    weight_arg = weights.detach() if in_memory else x
    counts = [outer * inner * (length // s) for s in scales]
    coefs = [2.0 * w / (c * s) for w, c, s in zip(host_weights, counts, scales)]
    padding = [0.0] * (MAX_SCALES - len(scales))
    padded_scales = list(scales) + [0] * (MAX_SCALES - len(scales))
    grad = torch.empty(input.shape, dtype=input.dtype, device=input.device) if compute_grad else input.new_empty(0)
    partial = torch.empty((n_programs, 8), dtype=torch.float32, device=input.device)
    _multiscale_mse_fwd_kernel[(n_programs,)](
        x, y, grad if compute_grad else x, partial, weight_arg,
        length, inner, *x.stride(), *y.stride(),
        n_col_blocks, n_splits, tiles_per_split, n_tiles,
        *coefs, *padding, *padded_scales,
        ROWS=rows, BLOCK_T=block_t, BLOCK_I=block_i, COMPUTE_GRAD=compute_grad, WEIGHTS_IN_MEMORY=in_memory,
        num_warps=_num_warps(block_t, block_i),
    )
    acc = accumulate_dtype(input.dtype)
    per_scale = torch.empty(len(scales), dtype=acc, device=input.device)
    loss = torch.empty((), dtype=acc, device=input.device)
    _multiscale_mse_reduce_kernel[(1,)](partial, per_scale, loss, weight_arg, n_programs,
                                        *[1.0 / c for c in counts], *padding, *host_weights, *padding,
                                        NUM_SCALES=len(scales), BLOCK_P=128, WEIGHTS_IN_MEMORY=in_memory)
    return loss, per_scale, grad
