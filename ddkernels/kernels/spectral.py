"""Triton kernels of the spectral losses, the rFFT taken as a dense product with a cached cos/sin basis.

    S_k = c sum_t x_t (cos - i sin)(2 pi k t / T),  k = 0 .. T/2  (c: 1, 1/sqrt(T) or 1/T by norm)
    L1: loss = mean_k |S(x - y)_k| or mean_k ||S(x)_k| - |S(y)_k||;  KL: see ddkernels.ops.spectral_kl
    gradient: dloss/dx_t = sum_k Re(G_k e^{+2 pi i k t / T}) with G = c dloss/dS, again a product with the basis.
The forward kernels compute the loss and G in one pass (G only when a gradient is needed), and the adjoint kernel
turns G into dloss/dx, all in the forward call (the op's backward only scales it). Above DENSE_MAX_LENGTH the
spectra come from cuFFT (torch.fft) and the same kernels run only their epilogue; the adjoint is then
torch.fft.irfft.
"""
import functools
import math

import torch
import triton
import triton.language as tl

from ddkernels._tensors import accumulate_dtype, as_3d

DENSE_MAX_LENGTH = 1024
PRECISION = "tf32x3"
BLOCK_R, BLOCK_K, BLOCK_T = 32, 64, 32  # forward tiles: rows x bins, reduced over steps of time
ADJOINT_BLOCK_T, ADJOINT_BLOCK_K = 64, 32  # backward tiles: rows x steps, reduced over bins
LAUNCH = {"num_warps": 8, "num_stages": 2}  # tf32x3 triples operand registers: 4 warps spill on sm_90
# At the interior bins (0 < k < T/2) a magnitude at most ZERO_TOLERANCE * c * sqrt(T sum_t x_t^2) is zero up to
# the transform's rounding (a constant series, exactly zero there, comes out near 1e-7 of that): its phase is
# noise, so it gets the zero subgradient, as on the cpu backend. DC and Nyquist test for exact zero.
ZERO_TOLERANCE = 1e-6


@triton.jit
def _dft_tile(x_ptr, x_row, x_st, y_ptr, y_row, y_st, rows_ok, cos_ptr, sin_ptr, k, k_ok, length, n_bins,
              DIFFERENCE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr,
              PRECISION: tl.constexpr):
    """Unnormalised rfft of rows (x - y when DIFFERENCE) at bins k: (re, im), each [BLOCK_R, BLOCK_K]."""
    re = tl.zeros([BLOCK_R, BLOCK_K], dtype=tl.float32)
    im = tl.zeros([BLOCK_R, BLOCK_K], dtype=tl.float32)
    for t0 in range(0, length, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        t_ok = t < length
        t64 = t.to(tl.int64)
        mask = rows_ok[:, None] & t_ok[None, :]
        x = tl.load(x_ptr + x_row[:, None] + t64[None, :] * x_st, mask=mask, other=0.0).to(tl.float32)
        if DIFFERENCE:
            x -= tl.load(y_ptr + y_row[:, None] + t64[None, :] * y_st, mask=mask, other=0.0).to(tl.float32)
        basis = t64[:, None] * n_bins + k[None, :]
        basis_mask = t_ok[:, None] & k_ok[None, :]
        cos = tl.load(cos_ptr + basis, mask=basis_mask, other=0.0)
        sin = tl.load(sin_ptr + basis, mask=basis_mask, other=0.0)
        re = tl.dot(x, cos, re, input_precision=PRECISION)
        im = tl.dot(x, sin, im, input_precision=PRECISION)
    return re, im


@triton.jit
def _spectrum_tile(x_ptr, x_row, x_st, y_ptr, y_row, y_st, spec_ptr, spec_row, spec_sk, rows_ok, cos_ptr, sin_ptr,
                   k, k_ok, length, n_bins, DIFFERENCE: tl.constexpr, FROM_SPECTRUM: tl.constexpr,
                   BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr):
    """Unnormalised spectrum tile: loaded from a torch.fft result (FROM_SPECTRUM) or computed from the rows."""
    if FROM_SPECTRUM:
        offsets = spec_row[:, None] + k.to(tl.int64)[None, :] * spec_sk
        mask = rows_ok[:, None] & k_ok[None, :]
        re = tl.load(spec_ptr + offsets, mask=mask, other=0.0)
        im = tl.load(spec_ptr + offsets + 1, mask=mask, other=0.0)
    else:
        re, im = _dft_tile(x_ptr, x_row, x_st, y_ptr, y_row, y_st, rows_ok, cos_ptr, sin_ptr, k, k_ok, length,
                           n_bins, DIFFERENCE, BLOCK_R, BLOCK_K, BLOCK_T, PRECISION)
    return re, im


@triton.jit
def _store_complex(ptr, offsets, re, im, mask):
    tl.store(ptr + offsets, re, mask=mask)
    tl.store(ptr + offsets + 1, im, mask=mask)


@triton.jit
def _row_norm(x_ptr, x_row, x_st, y_ptr, y_row, y_st, rows_ok, length, DIFFERENCE: tl.constexpr,
              BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr):
    """sqrt(T sum_t x_t^2) per row (x - y when DIFFERENCE), by Parseval the spectrum's norm: its rounding scale."""
    total = tl.zeros([BLOCK_R], dtype=tl.float32)
    for t0 in range(0, length, BLOCK_T):
        t64 = (t0 + tl.arange(0, BLOCK_T)).to(tl.int64)
        mask = rows_ok[:, None] & (t64 < length)[None, :]
        x = tl.load(x_ptr + x_row[:, None] + t64[None, :] * x_st, mask=mask, other=0.0).to(tl.float32)
        if DIFFERENCE:
            x -= tl.load(y_ptr + y_row[:, None] + t64[None, :] * y_st, mask=mask, other=0.0).to(tl.float32)
        total += tl.sum(x * x, axis=1)
    return tl.sqrt(total * length)


@triton.jit
def _resolved(magnitude, row_threshold, k, length):
    """Bins whose magnitude stands above the transform's rounding (see ZERO_TOLERANCE)."""
    interior = (k > 0) & (2 * k != length)
    return magnitude > tl.where(interior[None, :], row_threshold[:, None], 0.0)


@triton.jit
def _nonzero(magnitude):
    """A safe divisor: where a magnitude is 0 its gradient is set to 0, and no inf or NaN is formed on the way."""
    return tl.where(magnitude > 0, magnitude, 1.0)


@triton.jit
def _magnitude(ptr, offsets, mask):
    re = tl.load(ptr + offsets, mask=mask, other=0.0)
    im = tl.load(ptr + offsets + 1, mask=mask, other=0.0)
    return tl.sqrt(re * re + im * im)


@triton.jit
def _spectral_l1_fwd_kernel(
    x_ptr, y_ptr, a_spec_ptr, b_spec_ptr, cos_ptr, sin_ptr, g_ptr, partial_ptr,
    n_rows, inner, length, n_bins,
    x_so, x_st, x_si, y_so, y_st, y_si, a_so, a_sk, a_si, b_so, b_sk, b_si, g_slot, g_so, g_sk,
    norm_scale, grad_scale, zero_tol,
    AMPLITUDE: tl.constexpr, FROM_SPECTRUM: tl.constexpr, GRAD_FIRST: tl.constexpr, GRAD_SECOND: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr,
):
    """Per program: BLOCK_R rows, every bin. partial[pid] = sum of |S_a| or ||S_a| - |S_b||;
    G = grad_scale * sign * S / |S|."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rows_ok = rows < n_rows
    o, i = rows // inner, rows % inner
    x_row, y_row = o * x_so + i * x_si, o * y_so + i * y_si
    a_row, b_row = o * a_so + i * a_si, o * b_so + i * b_si
    g_row = o * g_so + i * 2
    a_zero = zero_tol * norm_scale * _row_norm(x_ptr, x_row, x_st, y_ptr, y_row, y_st, rows_ok, length,
                                             not AMPLITUDE, BLOCK_R, BLOCK_T)
    if AMPLITUDE:
        b_zero = zero_tol * norm_scale * _row_norm(y_ptr, y_row, y_st, x_ptr, x_row, x_st, rows_ok, length, False,
                                                 BLOCK_R, BLOCK_T)
    total = tl.zeros([BLOCK_R], dtype=tl.float32)
    for k0 in range(0, n_bins, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < n_bins
        mask = rows_ok[:, None] & k_ok[None, :]
        g_offsets = g_row[:, None] + k.to(tl.int64)[None, :] * g_sk
        are, aim = _spectrum_tile(x_ptr, x_row, x_st, y_ptr, y_row, y_st, a_spec_ptr, a_row, a_sk, rows_ok,
                                  cos_ptr, sin_ptr, k, k_ok, length, n_bins, not AMPLITUDE, FROM_SPECTRUM,
                                  BLOCK_R, BLOCK_K, BLOCK_T, PRECISION)
        are *= norm_scale
        aim *= norm_scale
        a_mag = tl.sqrt(are * are + aim * aim)
        if AMPLITUDE:
            bre, bim = _spectrum_tile(y_ptr, y_row, y_st, x_ptr, x_row, x_st, b_spec_ptr, b_row, b_sk, rows_ok,
                                      cos_ptr, sin_ptr, k, k_ok, length, n_bins, False, FROM_SPECTRUM,
                                      BLOCK_R, BLOCK_K, BLOCK_T, PRECISION)
            bre *= norm_scale
            bim *= norm_scale
            b_mag = tl.sqrt(bre * bre + bim * bim)
            diff = a_mag - b_mag
            total += tl.sum(tl.where(mask, tl.abs(diff), 0.0), axis=1)
            sign = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
            if GRAD_SECOND:
                gb = tl.where(_resolved(b_mag, b_zero, k, length), -sign * grad_scale / _nonzero(b_mag), 0.0)
                _store_complex(g_ptr + g_slot, g_offsets, gb * bre, gb * bim, mask)
        else:
            total += tl.sum(tl.where(mask, a_mag, 0.0), axis=1)
            sign = 1.0
        if GRAD_FIRST:
            ga = tl.where(_resolved(a_mag, a_zero, k, length), sign * grad_scale / _nonzero(a_mag), 0.0)
            _store_complex(g_ptr, g_offsets, ga * are, ga * aim, mask)
    tl.store(partial_ptr + pid, tl.sum(total))


@triton.jit
def _spectral_kl_fwd_kernel(
    s_ptr, t_ptr, s_spec_ptr, t_spec_ptr, cos_ptr, sin_ptr, g_ptr, partial_ptr,
    n_rows, inner, length, n_bins,
    s_so, s_st, s_si, t_so, t_st, t_si, ss_so, ss_sk, ss_si, ts_so, ts_sk, ts_si, s_slot, t_slot, g_so, g_sk,
    inv_tau, grad_scale, zero_tol,
    FROM_SPECTRUM: tl.constexpr, GRAD_FIRST: tl.constexpr, GRAD_SECOND: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, PRECISION: tl.constexpr,
):
    """Per program: BLOCK_R rows. Pass 1 stores both spectra in G's two slots (student's at offset s_slot) and keeps
    online log-sum-exp statistics; pass 2 sums the KL per row; pass 3 overwrites the slots with G (0 at bin 0)."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rows_ok = rows < n_rows
    o, i = rows // inner, rows % inner
    s_row, t_row = o * s_so + i * s_si, o * t_so + i * t_si
    ss_row, ts_row = o * ss_so + i * ss_si, o * ts_so + i * ts_si
    g_row = o * g_so + i * 2
    s_g_ptr, t_g_ptr = g_ptr + s_slot, g_ptr + t_slot
    s_zero = zero_tol * _row_norm(s_ptr, s_row, s_st, t_ptr, t_row, t_st, rows_ok, length, False, BLOCK_R, BLOCK_T)
    t_zero = zero_tol * _row_norm(t_ptr, t_row, t_st, s_ptr, s_row, s_st, rows_ok, length, False, BLOCK_R, BLOCK_T)
    used = length // 2
    max_s = tl.zeros([BLOCK_R], dtype=tl.float32)  # logits are magnitudes / tau >= 0
    max_t = tl.zeros([BLOCK_R], dtype=tl.float32)
    sum_s = tl.zeros([BLOCK_R], dtype=tl.float64)  # float64: a near one-hot softmax sums to 1 + 1e-9
    sum_t = tl.zeros([BLOCK_R], dtype=tl.float64)
    for k0 in range(0, n_bins, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < n_bins
        mask = rows_ok[:, None] & k_ok[None, :]
        used_mask = mask & (k >= 1)[None, :]
        g_offsets = g_row[:, None] + k.to(tl.int64)[None, :] * g_sk
        sre, sim = _spectrum_tile(s_ptr, s_row, s_st, t_ptr, t_row, t_st, s_spec_ptr, ss_row, ss_sk, rows_ok,
                                  cos_ptr, sin_ptr, k, k_ok, length, n_bins, False, FROM_SPECTRUM,
                                  BLOCK_R, BLOCK_K, BLOCK_T, PRECISION)
        tre, tim = _spectrum_tile(t_ptr, t_row, t_st, s_ptr, s_row, s_st, t_spec_ptr, ts_row, ts_sk, rows_ok,
                                  cos_ptr, sin_ptr, k, k_ok, length, n_bins, False, FROM_SPECTRUM,
                                  BLOCK_R, BLOCK_K, BLOCK_T, PRECISION)
        _store_complex(s_g_ptr, g_offsets, sre, sim, mask)
        _store_complex(t_g_ptr, g_offsets, tre, tim, mask)
        logit_s = tl.where(used_mask, tl.sqrt(sre * sre + sim * sim) * inv_tau, float("-inf"))
        logit_t = tl.where(used_mask, tl.sqrt(tre * tre + tim * tim) * inv_tau, float("-inf"))
        new_max_s = tl.maximum(max_s, tl.max(logit_s, axis=1))
        new_max_t = tl.maximum(max_t, tl.max(logit_t, axis=1))
        sum_s = (sum_s * tl.exp(max_s - new_max_s).to(tl.float64)
                 + tl.sum(tl.exp(logit_s - new_max_s[:, None]).to(tl.float64), axis=1))
        sum_t = (sum_t * tl.exp(max_t - new_max_t).to(tl.float64)
                 + tl.sum(tl.exp(logit_t - new_max_t[:, None]).to(tl.float64), axis=1))
        max_s, max_t = new_max_s, new_max_t
    tl.debug_barrier()
    # The log-softmax in float64: log p - log q cancels, and the teacher's gradient needs it to float accuracy.
    lse_s = max_s.to(tl.float64) + tl.log(tl.maximum(sum_s, 1e-30))
    lse_t = max_t.to(tl.float64) + tl.log(tl.maximum(sum_t, 1e-30))
    kl = tl.zeros([BLOCK_R], dtype=tl.float64)
    for k0 in range(0, n_bins, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        used_mask = rows_ok[:, None] & ((k >= 1) & (k <= used))[None, :]
        g_offsets = g_row[:, None] + k.to(tl.int64)[None, :] * g_sk
        s_mag = _magnitude(s_g_ptr, g_offsets, used_mask)
        t_mag = _magnitude(t_g_ptr, g_offsets, used_mask)
        log_q = tl.where(used_mask, s_mag.to(tl.float64) * inv_tau - lse_s[:, None], 0.0)
        log_p = tl.where(used_mask, t_mag.to(tl.float64) * inv_tau - lse_t[:, None], 0.0)
        kl += tl.sum(tl.where(used_mask, tl.exp(log_p) * (log_p - log_q), 0.0), axis=1)
    tl.store(partial_ptr + pid, tl.sum(tl.where(rows_ok, kl, 0.0)).to(tl.float32))
    if GRAD_FIRST or GRAD_SECOND:
        for k0 in range(0, n_bins, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            mask = rows_ok[:, None] & (k < n_bins)[None, :]
            used_mask = mask & (k >= 1)[None, :]
            g_offsets = g_row[:, None] + k.to(tl.int64)[None, :] * g_sk
            sre = tl.load(s_g_ptr + g_offsets, mask=mask, other=0.0)
            sim = tl.load(s_g_ptr + g_offsets + 1, mask=mask, other=0.0)
            tre = tl.load(t_g_ptr + g_offsets, mask=mask, other=0.0)
            tim = tl.load(t_g_ptr + g_offsets + 1, mask=mask, other=0.0)
            s_mag = tl.sqrt(sre * sre + sim * sim)
            t_mag = tl.sqrt(tre * tre + tim * tim)
            log_q = tl.where(used_mask, s_mag.to(tl.float64) * inv_tau - lse_s[:, None], 0.0)
            log_p = tl.where(used_mask, t_mag.to(tl.float64) * inv_tau - lse_t[:, None], 0.0)
            p = tl.exp(log_p)
            if GRAD_FIRST:
                ds = ((tl.exp(log_q) - p) * grad_scale).to(tl.float32)
                gs = tl.where(used_mask & _resolved(s_mag, s_zero, k, length), ds / _nonzero(s_mag), 0.0)
                _store_complex(s_g_ptr, g_offsets, gs * sre, gs * sim, mask)
            if GRAD_SECOND:
                dt = (p * (log_p - log_q - kl[:, None]) * grad_scale).to(tl.float32)
                gt = tl.where(used_mask & _resolved(t_mag, t_zero, k, length), dt / _nonzero(t_mag), 0.0)
                _store_complex(t_g_ptr, g_offsets, gt * tre, gt * tim, mask)


@triton.jit
def _spectral_adjoint_kernel(
    g_ptr, cos_ptr, sin_ptr, out_ptr, n_rows, inner, length, n_bins, g_ss, g_so, g_sk, out_ss,
    BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    """out[slot, row, t] = sum_k (Re G_k cos(2 pi k t / T) - Im G_k sin(2 pi k t / T)), out contiguous."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    slot = tl.program_id(2).to(tl.int64)
    rows_ok = rows < n_rows
    t_ok = t < length
    t64 = t.to(tl.int64)
    o, i = rows // inner, rows % inner
    g_row = slot * g_ss + o * g_so + i * 2
    acc = tl.zeros([BLOCK_R, BLOCK_T], dtype=tl.float32)
    for k0 in range(0, n_bins, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < n_bins
        g_offsets = g_row[:, None] + k.to(tl.int64)[None, :] * g_sk
        g_mask = rows_ok[:, None] & k_ok[None, :]
        g_re = tl.load(g_ptr + g_offsets, mask=g_mask, other=0.0)
        g_im = tl.load(g_ptr + g_offsets + 1, mask=g_mask, other=0.0)
        basis = t64[None, :] * n_bins + k[:, None]
        basis_mask = k_ok[:, None] & t_ok[None, :]
        cos = tl.load(cos_ptr + basis, mask=basis_mask, other=0.0)
        sin = tl.load(sin_ptr + basis, mask=basis_mask, other=0.0)
        acc = tl.dot(g_re, cos, acc, input_precision=PRECISION)
        acc = tl.dot(g_im, sin, acc, input_precision=PRECISION)
    out = out_ptr + slot * out_ss + (o * length * inner + i)[:, None] + t64[None, :] * inner
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=rows_ok[:, None] & t_ok[None, :])


@triton.jit
def _sum_kernel(partial_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        p = start + tl.arange(0, BLOCK)
        total += tl.load(partial_ptr + p, mask=p < n, other=0.0)
    tl.store(out_ptr, (tl.sum(total) * scale).to(out_ptr.dtype.element_ty))


@functools.lru_cache(maxsize=16)
def _basis(length, device):
    """cos and -sin of 2 pi k t / T as float32 [T, T/2 + 1] tables, the angle reduced exactly in integers."""
    t = torch.arange(length, dtype=torch.int64)
    k = torch.arange(length // 2 + 1, dtype=torch.int64)
    angle = (t[:, None] * k[None, :] % length).double() * (2 * math.pi / length)
    return torch.cos(angle).float().to(device), (-torch.sin(angle)).float().to(device)


def _dense(length):
    return length <= DENSE_MAX_LENGTH


def _rfft_3d(x):
    return torch.view_as_real(torch.fft.rfft(x.float(), dim=1))


def _spec_strides(spec):
    """(outer, bin, inner) element strides of a view_as_real spectrum [outer, bins, inner, 2]."""
    return spec.stride()[:3]


def _launch_setup(first, second, dim, slots):
    x, y = as_3d(first, dim), as_3d(second, dim)
    outer, length, inner = x.shape
    n_bins = length // 2 + 1
    g = torch.empty((slots, outer, n_bins, inner, 2), dtype=torch.float32, device=x.device)
    return x, y, outer, length, inner, n_bins, g


def _finish(partial, n_programs, scale, like):
    loss = torch.empty((), dtype=accumulate_dtype(like.dtype), device=like.device)
    _sum_kernel[(1,)](partial, loss, n_programs, scale, BLOCK=256)
    return loss


def spectral_l1(input, target, dim, amplitude, norm_scale, grad_first, grad_second):
    """(loss, grads): grads [slots, *shape] = dloss/d(argument), a slot per argument that needs a gradient (the
    complex loss has one slot, dloss/dinput, whenever either needs one: dloss/dtarget is its negative)."""
    if not amplitude:
        grad_first, grad_second = grad_first or grad_second, False
    x, y, outer, length, inner, n_bins, g = _launch_setup(input, target, dim, int(grad_first) + int(grad_second))
    n_rows = outer * inner
    count = n_rows * n_bins
    dense = _dense(length)
    if dense:
        a_spec = b_spec = x
        cos, sin = _basis(length, x.device)
        a_strides = b_strides = (0, 0, 0)
    else:
        a_spec = _rfft_3d(x) if amplitude else _rfft_3d(x.float() - y.float())
        b_spec = _rfft_3d(y) if amplitude else a_spec
        cos = sin = x
        a_strides, b_strides = _spec_strides(a_spec), _spec_strides(b_spec)
    n_programs = triton.cdiv(n_rows, BLOCK_R)
    partial = torch.empty(n_programs, dtype=torch.float32, device=x.device)
    g_arg = g if g.numel() else partial
    g_slot = g.stride(0) if g.shape[0] == 2 else 0  # the second argument's slot: 1 of 2, else 0
    _spectral_l1_fwd_kernel[(n_programs,)](
        x, y, a_spec, b_spec, cos, sin, g_arg, partial,
        n_rows, inner, length, n_bins,
        *x.stride(), *y.stride(), *a_strides, *b_strides, g_slot, n_bins * inner * 2, inner * 2,
        norm_scale, norm_scale / count, ZERO_TOLERANCE,
        AMPLITUDE=amplitude, FROM_SPECTRUM=not dense, GRAD_FIRST=grad_first, GRAD_SECOND=grad_second,
        BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K, BLOCK_T=BLOCK_T, PRECISION=PRECISION, **LAUNCH,
    )
    return _finish(partial, n_programs, 1.0 / count, input), _adjoint(g, input.shape, dim, input.dtype)


def spectral_kl(student, teacher, dim, tau, grad_first, grad_second):
    """(loss, grads): grads [slots, *shape] = dloss/d(argument), a slot per argument that needs a gradient
    (student first). The kernel keeps both spectra in two slots of G between its passes; the slots not needed are
    dropped before the adjoint."""
    s, t, outer, length, inner, n_bins, g = _launch_setup(student, teacher, dim, 2)
    n_rows = outer * inner
    count = n_rows * (length // 2)
    dense = _dense(length)
    if dense:
        s_spec = t_spec = s
        cos, sin = _basis(length, s.device)
        s_strides = t_strides = (0, 0, 0)
    else:
        s_spec, t_spec = _rfft_3d(s), _rfft_3d(t)
        cos = sin = s
        s_strides, t_strides = _spec_strides(s_spec), _spec_strides(t_spec)
    n_programs = triton.cdiv(n_rows, BLOCK_R)
    partial = torch.empty(n_programs, dtype=torch.float32, device=s.device)
    # (student, teacher) slot offsets; the needed slots come first so G is a prefix of the buffer.
    slots = (g.stride(0), 0) if grad_second and not grad_first else (0, g.stride(0))
    _spectral_kl_fwd_kernel[(n_programs,)](
        s, t, s_spec, t_spec, cos, sin, g, partial,
        n_rows, inner, length, n_bins,
        *s.stride(), *t.stride(), *s_strides, *t_strides, *slots, n_bins * inner * 2, inner * 2,
        1.0 / tau, 1.0 / (tau * count), ZERO_TOLERANCE,
        FROM_SPECTRUM=not dense, GRAD_FIRST=grad_first, GRAD_SECOND=grad_second,
        BLOCK_R=BLOCK_R, BLOCK_K=BLOCK_K, BLOCK_T=BLOCK_T, PRECISION=PRECISION, **LAUNCH,
    )
    loss = _finish(partial, n_programs, 1.0 / count, student)
    return loss, _adjoint(g[:int(grad_first) + int(grad_second)], student.shape, dim, student.dtype)


def _hermitian_weights(n_bins, length, device):
    """irfft counts interior bins twice: weight 1/2 there, 1 at DC and (for even T) Nyquist."""
    w = torch.full((n_bins,), 0.5, dtype=torch.float32, device=device)
    w[0] = 1.0
    if length % 2 == 0:
        w[-1] = 1.0
    return w


def _adjoint(g, shape, dim, dtype):
    """dloss/dx [slots, *shape] (float32; float64 for float64 inputs) from G [slots, outer, bins, inner, 2]."""
    slots, outer, n_bins, inner, _ = g.shape
    length = shape[dim]
    if slots == 0:  # no input requires grad (cuFFT rejects an empty transform)
        return torch.empty((0, *shape), dtype=accumulate_dtype(dtype), device=g.device)
    if not _dense(length):
        weights = _hermitian_weights(n_bins, length, g.device)[:, None]
        spectrum = torch.view_as_complex(g) * weights
        grads = torch.fft.irfft(spectrum, n=length, dim=2, norm="forward").reshape(slots, *shape)
        return grads.to(accumulate_dtype(dtype))
    grads = torch.empty((slots, *shape), dtype=torch.float32, device=g.device)
    cos, sin = _basis(length, g.device)
    n_rows = outer * inner
    grid = (triton.cdiv(n_rows, BLOCK_R), triton.cdiv(length, ADJOINT_BLOCK_T), slots)
    _spectral_adjoint_kernel[grid](
        g, cos, sin, grads, n_rows, inner, length, n_bins, g.stride(0), n_bins * inner * 2, inner * 2,
        grads.stride(0), BLOCK_R=BLOCK_R, BLOCK_T=ADJOINT_BLOCK_T, BLOCK_K=ADJOINT_BLOCK_K, PRECISION=PRECISION,
        **LAUNCH,
    )
    return grads.to(accumulate_dtype(dtype))
