"""Diffusion residual corrector: schedule and noising against their definitions, sampler against the
analytic probability-flow map, a trained toy denoiser against its data, distillation against its teacher."""

import copy
import math

import pytest
import torch
from torch import nn

from upt.models.denoiser import LatentDenoiser
from upt.models.diffusion import DiffusionCorrector, NoiseSchedule, distillation_loss, make_student

SEED = 0
DIM = 2
MU, STD = torch.tensor([1.0, 0.0]), 0.15  # toy: x0 | cond = cond / 2 +- MU + STD * N(0, I)


def toy(n, g):
    """A conditional two-cluster Gaussian mixture: (x0 [n, 1, 2], cond [n, 1, 2])."""
    cond = torch.rand(n, 1, DIM, generator=g) * 2 - 1
    side = torch.randint(0, 2, (n, 1, 1), generator=g).float() * 2 - 1
    return 0.5 * cond + side * MU + STD * torch.randn(n, 1, DIM, generator=g), cond


class ToyNet(nn.Module):
    """A small MLP with the LatentDenoiser signature net(x_t, t, cond)."""

    def __init__(self, hidden=128):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(2 * DIM + 3, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                               nn.SiLU(), nn.Linear(hidden, DIM))

    def forward(self, x, t, cond):
        t = t.view(-1, 1, 1).expand(*x.shape[:2], 1)
        return self.f(torch.cat([x, cond, t, torch.sin(math.pi * t), torch.cos(math.pi * t)], -1))


def fit(model, steps, loss_fn, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(SEED + 1)
    for _ in range(steps):
        loss = loss_fn(*toy(256, g), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def train_toy(prediction, steps=800):
    torch.manual_seed(SEED)
    model = DiffusionCorrector(ToyNet(), prediction=prediction, sample_steps=16)
    untrained = copy.deepcopy(model)
    return untrained, fit(model, steps, lambda x0, cond, g: model.loss(x0, cond), lr=3e-3)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(SEED)


@pytest.fixture(scope="module")
def teacher():
    return train_toy("v")


# ---------------------------------------------------------------- schedule, noising, identities


def test_schedule_endpoints_and_monotone():
    sch = NoiseSchedule()
    abar = sch.alpha_bar(torch.linspace(0, 1, 1001, dtype=torch.float64))
    assert abar[0] == 1.0 and abar[-1] <= 1e-4
    assert (abar.diff() <= 0).all() and (abar[:990].diff() < 0).all()  # strictly, until the clip


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_forward_noising_moments_match_schedule(t):
    sch = NoiseSchedule()
    n, x0 = 200_000, torch.tensor([2.0, -1.0])
    tt = torch.full((n,), t)
    x_t = sch.q_sample(x0.expand(n, 2), tt, torch.randn(n, 2))
    abar = float(sch.alpha_bar(torch.tensor(t)))
    se = 5 / math.sqrt(n)  # 5 standard errors (of a unit-variance mean)
    torch.testing.assert_close(x_t.mean(0), math.sqrt(abar) * x0, atol=se, rtol=0)
    torch.testing.assert_close(x_t.var(0), torch.full((2,), 1 - abar), atol=5 * math.sqrt(2 / n), rtol=0)
    assert ((x_t - x0) ** 2).mean() > 0.5 * (1 - abar)  # noise is really added
    assert torch.equal(sch.q_sample(x0, torch.zeros(1), torch.randn(2)), x0)


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_prediction_conversions_are_exact(prediction):
    model = DiffusionCorrector(ToyNet(), prediction=prediction).double()
    x0, eps = torch.randn(64, 3, 2, dtype=torch.float64), torch.randn(64, 3, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64)
    x_t = model.schedule.q_sample(x0, t, eps)
    x0_hat, eps_hat = model.to_x0_eps(model.target(x0, eps, t), x_t, t)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)
    alpha, sigma = model.schedule.alpha_sigma(t, x0)
    expected = eps if prediction == "eps" else alpha * eps - sigma * x0
    torch.testing.assert_close(model.target(x0, eps, t), expected)


def test_loss_regresses_the_target_on_the_noised_input():
    """An oracle that knows the noise and answers the target scores 0; the net saw x_t, not x0."""
    x0, eps, t = torch.randn(8, 1, 2), torch.randn(8, 1, 2), torch.rand(8)
    seen = []

    class Oracle(nn.Module):
        def forward(self, x_t, t_diff, cond):
            seen.append(x_t)
            return model.target(x0, eps, t_diff)

    model = DiffusionCorrector(Oracle())
    assert model.loss(x0, torch.zeros_like(x0), t, eps) == 0
    torch.testing.assert_close(seen[0], model.schedule.q_sample(x0, t, eps))


class GaussianOracle(nn.Module):
    """The exact denoiser of x0 ~ N(m, s^2 I):
    E[x0 | x_t] = m + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha m)."""

    def __init__(self, schedule, prediction, m=1.5, s=0.3):
        super().__init__()
        self.schedule, self.prediction, self.m, self.s = schedule, prediction, m, s

    def forward(self, x, t, cond):
        alpha, sigma = self.schedule.alpha_sigma(t, x)
        x0 = self.m + alpha * self.s**2 / (alpha**2 * self.s**2 + sigma**2) * (x - alpha * self.m)
        eps = (x - alpha * x0) / sigma
        return eps if self.prediction == "eps" else alpha * eps - sigma * x0


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_ddim_converges_to_the_analytic_flow_map(prediction):
    """For Gaussian data the probability-flow ODE from t = 1 is linear:
    x0 = m + s (x_1 - alpha_1 m) / sqrt(alpha_1^2 s^2 + sigma_1^2). DDIM must converge to it."""
    sch = NoiseSchedule()
    oracle = GaussianOracle(sch, prediction)
    model = DiffusionCorrector(oracle, sch, prediction=prediction).double()
    noise = torch.randn(500, 1, 2, dtype=torch.float64)
    cond = torch.zeros_like(noise)
    alpha1, sigma1 = sch.alpha_sigma(torch.ones(1, dtype=torch.float64), noise)
    m, s = oracle.m, oracle.s
    exact = m + s * (noise - alpha1 * m) / torch.sqrt(alpha1**2 * s**2 + sigma1**2)
    errors = [float((model.sample(cond, k, noise=noise) - exact).abs().max()) for k in (25, 100, 400)]
    assert errors[2] < 0.01 and errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3, errors
    # a point mass (s = 0) is reached exactly, even in one step
    oracle.s = 0.0
    torch.testing.assert_close(model.sample(cond, 1, noise=noise), torch.full_like(noise, oracle.m))


# ---------------------------------------------------------------- a trained toy denoiser


def denoising_error(model):
    g = torch.Generator().manual_seed(99)
    x0, cond = toy(4096, g)
    with torch.no_grad():
        return float(model.loss(x0, cond, torch.rand(4096, generator=g), torch.randn(x0.shape, generator=g)))


def test_training_reduces_denoising_error_v(teacher):
    untrained, trained = teacher
    assert denoising_error(trained) < 0.75 * denoising_error(untrained)  # 0.62-0.65 over seeds 0-3


def test_training_reduces_denoising_error_eps():
    untrained, trained = train_toy("eps", steps=300)
    assert denoising_error(trained) < 0.5 * denoising_error(untrained)  # 0.31-0.32 over seeds 0-3


def sample_stats(model, n=2000):
    """Samples at one fixed cond: |mean error|, |variance error| (max over dims), fraction within 3 STD
    of a cluster centre, and whether both clusters hold at least 30 % of the samples."""
    cond = torch.tensor([0.4, -0.6]).expand(n, 1, DIM)
    x = model.sample(cond, generator=torch.Generator().manual_seed(7))[:, 0]
    centre = 0.5 * cond[0, 0]
    d_plus, d_minus = (x - centre - MU).norm(dim=-1), (x - centre + MU).norm(dim=-1)
    hit = torch.minimum(d_plus, d_minus) < 3 * STD
    balance = min(float((d_plus < d_minus).float().mean()), float((d_minus < d_plus).float().mean()))
    return (float((x.mean(0) - centre).abs().max()), float((x.var(0) - (MU**2 + STD**2)).abs().max()),
            float(hit.float().mean()), balance > 0.3)


def test_sampler_reproduces_the_toy_distribution(teacher):
    untrained, trained = teacher
    mean_err, var_err, hits, balanced = sample_stats(trained)
    # measured over seeds 0-3: mean_err <= 0.05, var_err <= 0.11, hits 0.81-0.86
    assert mean_err < 0.15 and var_err < 0.2 and hits > 0.7 and balanced
    _, var_err0, hits0, _ = sample_stats(untrained)
    assert var_err0 > 0.5 and hits0 < 0.3  # measured: var_err >= 0.75, hits ~0.11


# ---------------------------------------------------------------- distillation


def distance_to_teacher(student, teacher_model, n=2000):
    """RMS distance of student and teacher samples from the same noise, and the student's variance."""
    g = torch.Generator().manual_seed(123)
    _, cond = toy(n, g)
    noise = torch.randn(cond.shape, generator=g)
    a, b = teacher_model.sample(cond, noise=noise), student.sample(cond, noise=noise)
    return float(((a - b) ** 2).sum(-1).mean().sqrt()), b.var(0).squeeze(), a.var(0).squeeze()


# measured over seeds 0-3: 1 step 0.95-1.03 -> 0.15-0.20, 2 steps 0.33-0.38 -> 0.05-0.06
@pytest.mark.parametrize("steps, tol", [(1, 0.3), (2, 0.15)])
def test_distilled_student_matches_the_teacher(teacher, steps, tol):
    _, teacher_model = teacher
    student = make_student(teacher_model, steps)
    before, *_ = distance_to_teacher(student, teacher_model)
    frozen = [p.clone() for p in teacher_model.parameters()]
    teacher_model.zero_grad(set_to_none=True)  # its own training left gradients behind
    fit(student, 150, lambda x0, cond, g: distillation_loss(
        student, teacher_model, cond, noise=torch.randn(cond.shape, generator=g)), lr=2e-3)
    after, var_student, var_teacher = distance_to_teacher(student, teacher_model)
    # close to the teacher, far closer than before, and than the data's spread (std ~ 1 along MU)
    assert after < tol and after < before / 3, (before, after)
    assert (var_student > 0.8 * var_teacher).all(), (var_student, var_teacher)  # not collapsed
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(teacher_model.parameters(), frozen))


# ---------------------------------------------------------------- with the real LatentDenoiser


def test_corrector_with_latent_denoiser_trains_and_scales():
    torch.manual_seed(SEED)
    net = LatentDenoiser(dim=16, depth=1, heads=2)
    corrector = DiffusionCorrector(net, data_scale=0.1, sample_steps=4)
    z_true, z_pred = torch.randn(3, 8, 16), torch.randn(3, 8, 16, requires_grad=True)
    corrector.residual_loss(z_true, z_pred).backward()
    assert z_pred.grad is None  # second stage: the surrogate is not trained by the corrector
    assert sum(float(p.grad.norm()) for p in net.parameters() if p.grad is not None) > 0
    assert corrector.correct(z_pred).shape == z_pred.shape
    # data_scale: the model sees x0 / scale, and samples come back in data units
    unit = DiffusionCorrector(net, sample_steps=4)
    t, eps, x0 = torch.rand(3), torch.randn(3, 8, 16), torch.randn(3, 8, 16)
    torch.testing.assert_close(corrector.loss(0.1 * x0, z_pred, t, eps), unit.loss(x0, z_pred, t, eps))
    torch.testing.assert_close(corrector.sample(z_pred, noise=eps), 0.1 * unit.sample(z_pred, noise=eps))
