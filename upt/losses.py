"""Training losses for UPT-style surrogates (encoder E -> latent z -> approximator A -> decoder D).

Every function takes tensors or callables, never a concrete model class, so one implementation serves
the grid and mesh encoders and every ablation arm. Shapes follow the model contract: fields on points
``[B, N, C]`` (grid data in row-major order of ``grid_shape``), rollouts ``[B, S, N, C]``, latents
``[B, T, D]``. Each term is a mean, not a sum, so a weight means the same at every resolution.

Point clouds padded to a common size pass ``mask [B, N]`` (True = real point) to the point-wise terms.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor

from upt.errors import UptError

Fn = Callable[[Tensor, Tensor], Tensor]


def _point_mask(mask: Tensor, x: Tensor) -> Tensor:
    """``mask [B, N]`` as a float view broadcastable to ``x [B, ..., N, C]``."""
    return mask.to(x.dtype).view(mask.shape[0], *[1] * (x.dim() - 3), mask.shape[1], 1)


def next_step_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """mean over batch, points and channels of (pred - target)^2 (masked points excluded)."""
    sq = (pred - target) ** 2
    if mask is None:
        return sq.mean()
    m = _point_mask(mask, sq).expand_as(sq)
    return (sq * m).sum() / m.sum()


def rollout_mse(pred: Tensor, target: Tensor, discount: float | None = None,
                mask: Tensor | None = None) -> Tensor:
    """Multi-step MSE of an autoregressive rollout ``[B, S, Q, C]``.

    L = sum_s w_s MSE_s / sum_s w_s with w_s = discount^s (s = 0 is the first predicted step);
    ``discount=None`` weights all steps equally. discount < 1 favours early steps.
    """
    sq = (pred - target) ** 2
    if mask is None:
        per_step = sq.mean(dim=(0, 2, 3))
    else:
        m = _point_mask(mask, sq).expand_as(sq)
        per_step = (sq * m).sum(dim=(0, 2, 3)) / m.sum(dim=(0, 2, 3))
    if discount is None:
        return per_step.mean()
    if not discount > 0:
        raise ValueError(f"discount must be > 0, got {discount}")
    w = discount ** torch.arange(per_step.numel(), dtype=per_step.dtype, device=per_step.device)
    return (w * per_step).sum() / w.sum()


def _amplitude(u: Tensor, grid_shape: tuple[int, ...]) -> Tensor:
    """|F u| per channel with ``norm="forward"`` (coefficient = mean of u e^{-2 pi i k.x}), half spectrum."""
    n, c = u.shape[-2:]
    if math.prod(grid_shape) != n:
        raise ValueError(f"grid_shape {tuple(grid_shape)} does not hold {n} points")
    g = u.reshape(-1, *grid_shape, c).movedim(-1, 1)  # [M, C, *grid]
    return torch.fft.rfftn(g, dim=tuple(range(2, g.dim())), norm="forward").abs()


def spectral_loss(pred: Tensor, target: Tensor, grid_shape: tuple[int, ...]) -> Tensor:
    """Absolute spectral-amplitude loss on a 1D or 2D (any-D) grid.

    L = mean_{b, c, k} (|P_k| - |T_k|)^2, P = rfftn(pred, norm="forward") over the grid axes, k over the
    rfftn half spectrum (N_1 x ... x (N_d // 2 + 1) modes). Example: pred - target adding A cos(2 pi k.x)
    with k in the kept half spectrum (and not its own mirror) gives (A/2)^2 / #modes.
    Phase-blind by design (a translated field scores 0): it penalises lost or spurious energy per
    wavenumber, which the point-wise MSE under-weights at high k; use it beside the MSE, not instead.
    Inputs ``[..., N, C]`` with N = prod(grid_shape), points in row-major grid order.
    """
    return ((_amplitude(pred, grid_shape) - _amplitude(target, grid_shape)) ** 2).mean()


def mean_consistency(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Conservation: mean_{b, c} (<pred>_x - <target>_x)^2 with <.>_x the mean over points (dim -2).

    On a uniform grid the point mean is the spatial mean; on point clouds it is the sample mean.
    """
    if mask is None:
        return ((pred.mean(-2) - target.mean(-2)) ** 2).mean()
    m = _point_mask(mask, pred)
    diff = ((pred - target) * m).sum(-2) / m.sum(-2)
    return (diff ** 2).mean()


def inverse_encoding_loss(encode: Fn, decode: Fn, u: Tensor, pos: Tensor, target: Tensor | None = None,
                          mask: Tensor | None = None) -> Tensor:
    """Inverse encoding (UPT sec. 5.2): mean ||D(E(u, pos), pos) - target||^2 at the input points.

    ``encode(u, pos) -> z`` and ``decode(z, pos) -> u`` are callables (close over grid_shape / mask).
    ``target`` defaults to the latest frame of u: its last ``fields`` channels (history is stacked oldest
    first), with ``fields`` the decoder's output width. Gradient reaches both E and D.
    """
    rec = decode(encode(u, pos), pos)
    if target is None:
        target = u[..., -rec.shape[-1]:]
    return next_step_mse(rec, target, mask)


def inverse_decoding_loss(encode: Fn, decode: Fn, z: Tensor, pos: Tensor,
                          context: Tensor | None = None) -> Tensor:
    """Inverse decoding (UPT sec. 5.2): mean ||E([context, D(z, pos)], pos) - sg(z)||^2.

    D decodes z at ``pos`` (for the grid encoder: the grid points) and E re-encodes the result, with the
    ``context`` frames ``[B, N, (history-1) * fields]`` prepended on channels when E takes a history.
    The target z is detached (sg = stop-gradient): otherwise, for z = E(u), the encoder could lower
    the loss by moving or shrinking the target itself rather than by making E invert D. Gradient still
    reaches D through D(z) and E through E(.), and the producer of z through the decoded path.
    """
    u = decode(z, pos)
    if context is not None:
        u = torch.cat([context, u], dim=-1)
    return ((encode(u, pos) - z.detach()) ** 2).mean()


def latent_norm_penalty(z: Tensor) -> Tensor:
    """mean z^2 = mean over tokens of ||z_t||^2 / D. Squared (not ||z||) so the gradient is smooth at 0."""
    return (z ** 2).mean()


def latent_drift(pred: Tensor, target: Tensor) -> Tensor:
    """mean over tokens (and steps) of (||pred_t|| / ||target_t|| - 1)^2: how far the norms of
    rolled-out latent tokens drift from those of the true latents, independent of the latents' scale.

    The scale-free form of a latent-norm penalty: the decoder layer-normalizes the tokens it reads,
    so a penalty on ||z|| itself is met by shrinking the scale with nothing else changing; the norm
    of a predicted token relative to the true one is what a rollout can get wrong."""
    ratio = pred.norm(dim=-1) / target.norm(dim=-1).clamp_min(1e-6)
    return ((ratio - 1) ** 2).mean()


def derivative(f: Tensor, h: float, dim: int, periodic: bool = False) -> Tensor:
    """df/dx along axis ``dim`` of samples ``h`` apart, same shape as f.

    ``periodic=True`` (a periodic domain of ``n`` samples i h, e.g. the 2D Navier-Stokes torus):
    spectral, rfft along the axis times i k, k = 2 pi m / (n h), the Nyquist mode (whose derivative
    is not real) dropped. Exact for fields band-limited below the Nyquist frequency, which is what a
    Fourier solver saves; central differences instead err by O((k h)^2) k, so they score the
    divergence-free truth of such a solver as divergent. torch.fft is differentiable, so a loss on it
    trains. Half precision (bf16 autocast) is computed in float32: the FFT kernels take no bf16.
    Otherwise: second-order central differences, second-order one-sided at the two ends
    (torch.gradient, edge_order=2), exact for quadratics.
    """
    if not periodic:
        return torch.gradient(f, spacing=h, dim=dim, edge_order=2)[0]
    n = f.shape[dim]
    f = f.to(torch.promote_types(f.dtype, torch.float32))
    k = 2 * math.pi * torch.fft.rfftfreq(n, d=h, dtype=f.dtype, device=f.device)
    if n % 2 == 0:
        k[-1] = 0.0
    shape = [1] * f.dim()
    shape[dim] = -1
    return torch.fft.irfft(torch.fft.rfft(f, dim=dim) * (1j * k.view(shape)), n=n, dim=dim)


def velocity_gradient(velocity: Tensor, spacing: tuple[float, float], periodic: bool = False) -> Tensor:
    """dv_i/dx_j of a 2D velocity ``[B, X, Y, 2]`` -> ``[B, X, Y, 2, 2]`` (i the component, j the
    axis): axis 1 is x (spacing dx), axis 2 is y; derivatives as in :func:`derivative`."""
    return torch.stack([torch.stack([derivative(velocity[..., i], h, dim, periodic)
                                     for dim, h in zip((1, 2), spacing)], -1) for i in range(2)], -2)


def divergence(velocity: Tensor, spacing: tuple[float, float], periodic: bool = False) -> Tensor:
    """div v = du/dx + dv/dy of a 2D velocity ``[B, X, Y, 2]`` -> ``[B, X, Y]``; axis 1 is x (first
    grid axis, spacing dx), axis 2 is y. ``periodic=True``: spectral derivatives (exact for
    band-limited fields), else central differences; see :func:`derivative`."""
    dx, dy = spacing
    return derivative(velocity[..., 0], dx, 1, periodic) + derivative(velocity[..., 1], dy, 2, periodic)


def divergence_penalty(velocity: Tensor, spacing: tuple[float, float], periodic: bool = False) -> Tensor:
    """Incompressibility prior: mean (div v)^2 over batch and grid, see :func:`divergence`."""
    return (divergence(velocity, spacing, periodic) ** 2).mean()


def periodic_domain(attrs: Mapping, source: object = "dataset") -> bool:
    """Whether a converted dataset's attributes (of file ``source``) declare a periodic domain:
    ``pde_periodic`` = 1, which `upt convert` copies from the root attribute ``periodic`` of a
    generator whose domain is periodic (ns2d). PDEBench's files declare nothing and count as bounded."""
    value = attrs.get("pde_periodic", 0)
    if value not in (0, 1):
        raise UptError(f"{source}: attribute pde_periodic must be 0 or 1, got {value!r}")
    return bool(value)


def combine(terms: Mapping[str, tuple[float, Callable[[], Tensor]]]) -> tuple[Tensor, dict[str, Tensor]]:
    """total = sum_i w_i * L_i() over the terms with w_i != 0.

    A zero weight skips the thunk entirely, so a disabled term costs no forward pass (and cannot leak
    gradient). Returns ``(total, values)`` with ``values[name]`` the detached, unweighted value of every
    evaluated term, for logging. Negative or non-finite weights, or all weights zero, are errors.
    """
    total, values = None, {}
    for name, (weight, thunk) in terms.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"loss weight {name}={weight} must be finite and >= 0")
        if weight == 0:
            continue
        value = thunk()
        values[name] = value.detach()
        total = weight * value if total is None else total + weight * value
    if total is None:
        raise ValueError("every loss weight is zero: nothing to train")
    return total, values
