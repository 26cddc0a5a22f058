"""Latent diffusion residual corrector.

The approximator predicts the next latent z_pred; its error r = z_true - z_pred (z_true = E(u_next))
is modelled as a conditional distribution p(r | z_pred) by a denoising diffusion model in latent
space, and the corrected latent is z_pred + r_sample. Everything here is generic over a network with
the ``LatentDenoiser`` signature ``net(x_t [B,T,D], t [B] in [0,1], cond [B,T,D]) -> [B,T,D]``.

Schedule, continuous time t in [0, 1], cosine (Nichol & Dhariwal 2021):
    abar(t) = f(t) / f(0),  f(t) = cos^2(pi/2 * (t + s) / (1 + s)),  s = 0.008,
    clipped below at abar_min = 1e-4 (so alpha >= 0.01 and x0 = (x_t - sigma eps) / alpha stays finite;
    the same role as the beta <= 0.999 clip of the discrete schedule).
    alpha = sqrt(abar), sigma = sqrt(1 - abar).
Forward noising:  q(x_t | x0) = N(alpha x0, sigma^2 I),  x_t = alpha x0 + sigma eps.
Prediction targets: eps, or v = alpha eps - sigma x0 (Salimans & Ho 2022, the default: well
    conditioned at t = 1 where eps-prediction must divide by alpha ~ 0.01). Inversions:
    x0 = alpha x_t - sigma v,  eps = sigma x_t + alpha v;   x0 = (x_t - sigma eps) / alpha.
Sampler: DDIM with eta = 0 (Song et al. 2021), deterministic given the starting noise x_1 ~ N(0, I):
    on the uniform grid 1 = t_0 > ... > t_K = 0,
    x_{t_{k+1}} = alpha(t_{k+1}) x0_hat(x_{t_k}) + sigma(t_{k+1}) eps_hat(x_{t_k}).
Distillation: *direct* distillation (Luhman & Luhman 2021), not consistency distillation: a student
    sampled with K' = 1 or 2 DDIM steps is trained so that, from the same noise, its output equals the
    teacher's K-step DDIM output (loss in :func:`distillation_loss`). The target is the teacher's exact
    deterministic sample, so convergence is checkable against it; unlike the consistency objective it
    needs no EMA target network and no data, only noise and conditions.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


class NoiseSchedule:
    """Cosine schedule in continuous time t in [0, 1]; see the module docstring for the equations."""

    def __init__(self, s: float = 0.008, alpha_bar_min: float = 1e-4):
        self.s, self.alpha_bar_min = s, alpha_bar_min

    def alpha_bar(self, t: Tensor) -> Tensor:
        """abar(t) = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s)), clipped to [abar_min, 1]."""
        def f(u: Tensor) -> Tensor:
            return torch.cos(math.pi / 2 * (u + self.s) / (1 + self.s)) ** 2

        # f(0) in t's own dtype, so that abar(0) = 1 and sigma(0) = 0 exactly (DDIM ends on x0_hat)
        return (f(t) / f(torch.zeros_like(t))).clamp(self.alpha_bar_min, 1.0)

    def alpha_sigma(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """alpha(t), sigma(t) for per-sample ``t [B]``, shaped to broadcast against ``like [B, ...]``."""
        abar = self.alpha_bar(t.to(like.dtype)).view(-1, *[1] * (like.dim() - 1))
        return abar.sqrt(), (1 - abar).sqrt()

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward noising x_t = alpha(t) x0 + sigma(t) noise."""
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * noise


class DiffusionCorrector(nn.Module):
    """Conditional diffusion model over latent residuals, wrapping a denoiser ``net``.

    ``prediction``: "v" or "eps" (what ``net`` outputs). ``data_scale``: the model works on x0 / data_scale
    so that residuals, typically much smaller than 1, meet unit-variance noise (set it to the residual
    std of the training split). ``sample_steps``: default number of DDIM steps of :meth:`sample`.
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule | None = None, prediction: str = "v",
                 data_scale: float = 1.0, sample_steps: int = 32):
        super().__init__()
        if prediction not in ("v", "eps"):
            raise ValueError(f"prediction must be 'v' or 'eps', got {prediction!r}")
        self.net, self.schedule = net, schedule or NoiseSchedule()
        self.prediction, self.data_scale, self.sample_steps = prediction, data_scale, sample_steps

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Regression target of ``net`` for normalized x0: eps, or v = alpha eps - sigma x0."""
        if self.prediction == "eps":
            return noise
        alpha, sigma = self.schedule.alpha_sigma(t, x0)
        return alpha * noise - sigma * x0

    def to_x0_eps(self, out: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) from a network output: the inversions of the module docstring."""
        alpha, sigma = self.schedule.alpha_sigma(t, x_t)
        if self.prediction == "eps":
            return (x_t - sigma * out) / alpha, out
        return alpha * x_t - sigma * out, sigma * x_t + alpha * out

    def loss(self, x0: Tensor, cond: Tensor, t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """Denoising loss E_{t~U(0,1), eps~N(0,I)} mean ||net(x_t, t, cond) - target||^2, x0 in data units.

        ``t`` and ``noise`` default to fresh draws; pass them to evaluate on fixed ones."""
        x0 = x0 / self.data_scale
        t = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype) if t is None else t
        noise = torch.randn_like(x0) if noise is None else noise
        out = self.net(self.schedule.q_sample(x0, t, noise), t, cond)
        return ((out - self.target(x0, noise, t)) ** 2).mean()

    def ddim(self, noise: Tensor, cond: Tensor, steps: int) -> Tensor:
        """Deterministic DDIM (eta = 0) from x_1 = ``noise`` to x_0 in ``steps`` uniform steps, data units.

        Differentiable (used by distillation to train a student through its own sampler)."""
        x = noise
        ts = torch.linspace(1.0, 0.0, steps + 1, device=noise.device, dtype=noise.dtype)
        ts = ts[:, None].expand(-1, x.shape[0])  # one time per sample, as the net expects
        for t, t_next in zip(ts[:-1], ts[1:]):
            x0_hat, eps_hat = self.to_x0_eps(self.net(x, t, cond), x, t)
            alpha, sigma = self.schedule.alpha_sigma(t_next, x)
            x = alpha * x0_hat + sigma * eps_hat
        return x * self.data_scale

    @torch.no_grad()
    def sample(self, cond: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
        """A sample x0 ~ p(x0 | cond), shaped like ``cond``.

        ``noise`` fixes x_1, else it is drawn from ``generator``; ``steps`` defaults to ``sample_steps``."""
        if noise is None:
            noise = torch.randn(cond.shape, generator=generator, device=cond.device, dtype=cond.dtype)
        return self.ddim(noise, cond, steps or self.sample_steps)

    def residual_loss(self, z_true: Tensor, z_pred: Tensor) -> Tensor:
        """Denoising loss for the residual r = z_true - z_pred given z_pred.

        Both inputs are detached: the corrector is a second stage and must not reshape the surrogate."""
        z_pred = z_pred.detach()
        return self.loss(z_true.detach() - z_pred, z_pred)

    @torch.no_grad()
    def correct(self, z_pred: Tensor, steps: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Corrected latent z_pred + r, r ~ p(r | z_pred)."""
        return z_pred + self.sample(z_pred, steps, generator)


def make_student(teacher: DiffusionCorrector, steps: int = 1) -> DiffusionCorrector:
    """A student initialized from the teacher's weights (as in progressive distillation), sampled in
    ``steps`` DDIM steps. At initialization its 1-step output is the teacher's x0 estimate at t = 1, i.e.
    about E[x0 | cond]: a collapsed sample, which distillation must then spread out."""
    student = copy.deepcopy(teacher)
    student.sample_steps = steps
    student.requires_grad_(True)
    return student


def distillation_loss(student: DiffusionCorrector, teacher: DiffusionCorrector, cond: Tensor,
                      noise: Tensor | None = None, teacher_steps: int | None = None) -> Tensor:
    """Direct distillation: mean ||(S_{K'}(x_1, cond) - T_K(x_1, cond)) / data_scale||^2.

    x_1 ~ N(0, I) is shared; T_K is the teacher's K-step DDIM sample (no gradient, K = ``teacher_steps``,
    default the teacher's ``sample_steps``), S_{K'} the student's DDIM with K' = ``student.sample_steps``
    steps, differentiated through all of its steps. Gradient reaches the student only.
    """
    noise = torch.randn_like(cond) if noise is None else noise
    with torch.no_grad():
        target = teacher.ddim(noise, cond, teacher_steps or teacher.sample_steps)
    pred = student.ddim(noise, cond, student.sample_steps)
    return (((pred - target) / student.data_scale) ** 2).mean()
