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
Distillation, two ways from the same teacher:
  * direct (Luhman & Luhman 2021): a student sampled with K' DDIM steps is trained so that, from the
    same noise, its output equals the teacher's K-step DDIM output (:func:`distillation_loss`). It needs
    no data, only noise and conditions, but backpropagates through all K' student steps and runs the
    whole K-step teacher sampler every training step.
  * consistency (Song et al. 2023, CD): a consistency function f(x_t, t) -> x0, trained so that f takes
    the same value at adjacent points of one teacher ODE trajectory (:func:`consistency_loss`): one
    teacher DDIM step per training step instead of K, on noised data.
    Parameterisation (``prediction="consistency"``): f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t) with
    c_skip = alpha(t), c_out = -sigma(t). These are Song et al.'s (EDM's) scalings with sigma_data = 1
    (the model sees x0 / data_scale, of unit std), moved to this VP schedule: their input is the VE
    variable y = x_t / alpha = x0 + s eps, s = sigma / alpha, and c_skip(s) y = y / (1 + s^2) = alpha x_t,
    c_out(s) = s / sqrt(1 + s^2) = sigma (using alpha^2 + sigma^2 = 1). The boundary: alpha(0) = 1 and
    sigma(0) = 0 exactly, so t_min = 0 and f(x, 0) = x holds exactly, without Song et al.'s shift of
    the scalings to a t_min > 0. The sign of c_out makes F play the role of v (f is then the v-model's
    x0 estimate), so a student copied from a v-prediction teacher starts as the teacher's one-step
    estimate.
    Discretisation: the teacher's own sampling grid t_n = n / N, N = the teacher's ``sample_steps``,
    so the fixed point of the consistency loss is the teacher's N-step DDIM map, the sample the
    direct student also imitates.
    Sampling (Song et al. 2023, Algorithm 1): x0 = f(x_1, 1); for tau = 1 - i / S, i = 1 .. S-1:
    x0 = f(alpha(tau) x0 + sigma(tau) eps_i, tau) with fresh noise eps_i. S = 1 is deterministic.
Every sampler spends one network evaluation per step: ``nfe`` = ``sample_steps``.
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


PREDICTIONS = ("v", "eps", "consistency")


class DiffusionCorrector(nn.Module):
    """Conditional diffusion model over latent residuals, wrapping a denoiser ``net``.

    ``prediction``: "v" or "eps" (what ``net`` outputs; sampled by DDIM), or "consistency" (a
    consistency-distilled student, see the module docstring; sampled by the consistency sampler).
    It is the only thing a checkpoint's spec records about the kind of model, so it also picks the
    sampler. ``data_scale``: the model works on x0 / data_scale so that residuals, typically much
    smaller than 1, meet unit-variance noise (set it to the residual std of the training split).
    ``sample_steps``: default number of sampler steps of :meth:`sample`.
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule | None = None, prediction: str = "v",
                 data_scale: float = 1.0, sample_steps: int = 32):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net, self.schedule = net, schedule or NoiseSchedule()
        self.prediction, self.data_scale, self.sample_steps = prediction, data_scale, _steps(sample_steps)

    @property
    def nfe(self) -> int:
        """Network evaluations per corrected rollout step: one per step of either sampler."""
        return self.sample_steps

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
        # v, and the consistency student, whose F is read as v: x0 = c_skip x_t + c_out F
        return alpha * x_t - sigma * out, sigma * x_t + alpha * out

    def scalings(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """c_skip(t) = alpha(t), c_out(t) = -sigma(t) of the consistency function (1 and 0 at t = 0)."""
        alpha, sigma = self.schedule.alpha_sigma(t, like)
        return alpha, -sigma

    def consistency_fn(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """f(x_t, t) = c_skip(t) x_t + c_out(t) net(x_t, t, cond), the x0 estimate, normalized units.

        Exactly x_t at t = 0 whatever the weights (the boundary condition of a consistency model)."""
        c_skip, c_out = self.scalings(t, x_t)
        return c_skip * x_t + c_out * self.net(x_t, t, cond)

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
        ts = _grid(steps, x)
        for t, t_next in zip(ts[:-1], ts[1:]):
            x = self.ddim_step(x, t, t_next, cond)
        return x * self.data_scale

    def ddim_step(self, x: Tensor, t: Tensor, t_next: Tensor, cond: Tensor) -> Tensor:
        """One deterministic DDIM step (normalized units) from time ``t`` to ``t_next`` (both [B])."""
        x0_hat, eps_hat = self.to_x0_eps(self.net(x, t, cond), x, t)
        alpha, sigma = self.schedule.alpha_sigma(t_next, x)
        return alpha * x0_hat + sigma * eps_hat

    def consistency_sample(self, noise: Tensor, cond: Tensor, steps: int,
                           generator: torch.Generator | None = None) -> Tensor:
        """Multistep consistency sampling from x_1 = ``noise`` at tau_i = 1 - i / steps, data units.

        Each later step re-noises the current x0 estimate to tau_i with fresh noise (from ``generator``)
        and applies f again: ``steps`` network evaluations."""
        taus = _grid(steps, noise)[:-1]  # 1, 1 - 1/S, ..., 1/S
        x0 = self.consistency_fn(noise, taus[0], cond)
        for tau in taus[1:]:
            eps = _randn(noise, generator)
            x0 = self.consistency_fn(self.schedule.q_sample(x0, tau, eps), tau, cond)
        return x0 * self.data_scale

    @torch.no_grad()
    def sample(self, cond: Tensor, steps: int | None = None, generator: torch.Generator | None = None,
               noise: Tensor | None = None) -> Tensor:
        """A sample x0 ~ p(x0 | cond), shaped like ``cond``: DDIM, or the consistency sampler.

        ``noise`` fixes x_1, else it is drawn from ``generator`` (as is the consistency sampler's
        re-noising); ``steps`` defaults to ``sample_steps``."""
        noise = _randn(cond, generator) if noise is None else noise
        steps = steps or self.sample_steps
        if self.prediction == "consistency":
            return self.consistency_sample(noise, cond, steps, generator)
        return self.ddim(noise, cond, steps)

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


def _steps(steps: int, limit: int | None = None) -> int:
    """``steps`` if it is an integer in [1, limit], else a ValueError saying which bound it breaks."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"a sampler needs a whole number of steps >= 1, got {steps!r}")
    if limit is not None and steps > limit:
        raise ValueError(f"a student of {steps} steps would take more steps than its {limit}-step teacher")
    return int(steps)


def _grid(steps: int, like: Tensor) -> Tensor:
    """The uniform time grid 1 = t_0 > ... > t_steps = 0, one time per sample: [steps + 1, B]."""
    ts = torch.linspace(1.0, 0.0, steps + 1, device=like.device, dtype=like.dtype)
    return ts[:, None].expand(-1, like.shape[0])


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def make_student(teacher: DiffusionCorrector, steps: int = 1) -> DiffusionCorrector:
    """A student initialized from the teacher's weights (as in progressive distillation), sampled in
    ``steps`` DDIM steps. At initialization its 1-step output is the teacher's x0 estimate at t = 1, i.e.
    about E[x0 | cond]: a collapsed sample, which distillation must then spread out."""
    student = copy.deepcopy(teacher)
    student.sample_steps = _steps(steps, teacher.sample_steps)
    student.requires_grad_(True)
    return student


def make_consistency_student(teacher: DiffusionCorrector, steps: int = 1) -> DiffusionCorrector:
    """A consistency student (same network, copied from the teacher) sampled in ``steps`` steps.

    Needs a v-prediction teacher: the student reads its network's output as v, so that it starts as
    the teacher's x0 estimate (an eps network would start as garbage, and at t = 1 its x0 estimate
    multiplies the network's error by sigma / alpha ~ 100)."""
    if teacher.prediction != "v":
        raise ValueError(f"consistency distillation needs a v-prediction teacher, got {teacher.prediction!r}")
    student = make_student(teacher, steps)
    student.prediction = "consistency"
    return student


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """theta- <- decay * theta- + (1 - decay) * theta, weight by weight (buffers are copied)."""
    for p_target, p in zip(target.parameters(), online.parameters(), strict=True):
        p_target.lerp_(p, 1.0 - decay)
    for b_target, b in zip(target.buffers(), online.buffers(), strict=True):
        b_target.copy_(b)


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


def consistency_loss(student: DiffusionCorrector, target: DiffusionCorrector, teacher: DiffusionCorrector,
                     x0: Tensor, cond: Tensor, n: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """Consistency distillation: mean ||f_theta(x_{t_{n+1}}, t_{n+1}) - f_theta-(x^_{t_n}, t_n)||^2.

    x0 in data units; t_n = n / N on the teacher's grid (N = ``teacher.sample_steps``), n ~ U{0..N-1}
    unless given ([B] integers); x_{t_{n+1}} = alpha x0 + sigma ``noise``; x^_{t_n} is one teacher DDIM
    step from it. ``target`` (theta-, the EMA of the student) and the teacher get no gradient. Squared
    L2 in normalized units with uniform weighting lambda(t_n) = 1, like the other corrector losses.
    """
    x0 = x0 / student.data_scale
    steps = teacher.sample_steps
    if n is None:
        n = torch.randint(steps, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0) if noise is None else noise
    t, t_next = n.to(x0) / steps, (n.to(x0) + 1) / steps
    x_next = student.schedule.q_sample(x0, t_next, noise)
    with torch.no_grad():
        goal = target.consistency_fn(teacher.ddim_step(x_next, t_next, t, cond), t, cond)
    return ((student.consistency_fn(x_next, t_next, cond) - goal) ** 2).mean()
