"""Loss terms: hand-computed values, shapes, and that each term trains the modules it is meant to."""

import math

import pytest
import torch

from upt import losses as L
from upt.errors import UptError
from upt.models.presets import build_model

from grids import grid_pos


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- values against hand computation


def test_next_step_mse_value_and_mask():
    assert L.next_step_mse(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.zeros(1, 2, 2)) == 7.5
    # a padded point (100) is ignored: (1 + 4) / 2
    pred, mask = torch.tensor([[[1.0], [2.0], [100.0]]]), torch.tensor([[True, True, False]])
    assert L.next_step_mse(pred, torch.zeros(1, 3, 1), mask) == 2.5


def test_rollout_mse_value_and_discount():
    pred = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)  # squared errors 1, 4, 9 at steps 0, 1, 2
    target = torch.zeros_like(pred)
    assert L.rollout_mse(pred, target) == pytest.approx(14 / 3)
    assert L.rollout_mse(pred, target, discount=0.5) == pytest.approx((1 + 0.5 * 4 + 0.25 * 9) / 1.75)
    mask = torch.tensor([[True, False]])  # per step: only the first point counts
    pred2 = torch.cat([pred, torch.full_like(pred, 50.0)], dim=2)
    assert L.rollout_mse(pred2, torch.zeros_like(pred2), mask=mask) == pytest.approx(14 / 3)
    with pytest.raises(ValueError):
        L.rollout_mse(pred, target, discount=0.0)


def cos_mode(shape, k, amplitude):
    """amplitude * cos(2 pi k.x) on the periodic grid x_i = i / n, as points [1, N, 1]."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) / n for n in shape), indexing="ij")
    phase = sum(2 * math.pi * ki * x for ki, x in zip(k, axes))
    return (amplitude * torch.cos(phase)).reshape(1, -1, 1)


def test_spectral_loss_single_mode_1d_and_2d():
    # 1D, 8 points: rfft keeps 5 modes; an added 2 cos(2 pi 2x) has |coefficient| 1 -> 1^2 / 5.
    target = cos_mode((8,), (1,), 3.0)
    pred = target + cos_mode((8,), (2,), 2.0)
    assert L.spectral_loss(pred, target, (8,)) == pytest.approx(1 / 5)
    assert L.spectral_loss(target, target, (8,)) == 0
    # 2D 8 x 8: rfftn keeps 8 x 5 modes; mode (1, 2) lies in it once (its mirror (-1, -2) does not).
    target = cos_mode((8, 8), (1, 0), 3.0)
    pred = target + cos_mode((8, 8), (1, 2), 2.0)
    assert L.spectral_loss(pred, target, (8, 8)) == pytest.approx(1 / 40)


def test_spectral_loss_is_phase_blind_and_shape_generic():
    u = torch.randn(2, 3, 64, 2)  # [B, S, N, C]: a rollout on an 8 x 8 grid, two channels
    shifted = u.view(2, 3, 8, 8, 2).roll(3, dims=2).reshape(2, 3, 64, 2)
    assert L.spectral_loss(shifted, u, (8, 8)) == pytest.approx(0, abs=1e-10)
    assert L.spectral_loss(u + 1, u, (8, 8)) > 0
    with pytest.raises(ValueError, match="grid_shape"):
        L.spectral_loss(u, u, (8, 7))


def test_mean_consistency_of_shift_is_shift_squared():
    target = torch.randn(2, 50, 2)
    assert L.mean_consistency(target + 0.3, target) == pytest.approx(0.09)
    shift = torch.tensor([0.3, -0.4])
    assert L.mean_consistency(target + shift, target) == pytest.approx((0.09 + 0.16) / 2)
    # a zero-mean perturbation conserves the mean
    wave = torch.sin(2 * math.pi * torch.arange(50) / 50).view(1, 50, 1)
    assert L.mean_consistency(target + wave, target) == pytest.approx(0, abs=1e-12)
    # padded points do not count
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[:, 40:] = False
    pred = target + 0.3
    pred[:, 40:] = 1e3
    assert L.mean_consistency(pred, target, mask) == pytest.approx(0.09)


def test_latent_norm_penalty_value():
    assert L.latent_norm_penalty(torch.full((2, 4, 3), 2.0)) == 4.0


def test_latent_drift_is_the_squared_relative_norm_error_and_scale_free():
    target = torch.randn(2, 3, 4, 8)
    assert L.latent_drift(target, target) == 0
    # every predicted token 1.5x the norm of its target: (1.5 - 1)^2 = 0.25, at any scale
    for scale in (1e-3, 1.0, 1e3):
        assert L.latent_drift(1.5 * scale * target, scale * target) == pytest.approx(0.25)
    rotated = target.flip(-1)  # same norms, other direction: no drift in norm
    assert L.latent_drift(rotated, target) == pytest.approx(0.0, abs=1e-12)


def test_divergence_of_linear_field_is_two_exactly():
    # u = (x, y) on an anisotropic grid: a swapped spacing would give dx/dy + dy/dx != 2.
    x = torch.arange(10, dtype=torch.float64) * 0.1
    y = torch.arange(12, dtype=torch.float64) * 0.05
    X, Y = torch.meshgrid(x, y, indexing="ij")
    v = torch.stack([X, Y], -1)[None]
    two = torch.full((1, 10, 12), 2.0, dtype=torch.float64)
    torch.testing.assert_close(L.divergence(v, (0.1, 0.05)), two)
    assert L.divergence_penalty(v, (0.1, 0.05)) == pytest.approx(4.0)


@pytest.mark.parametrize("periodic", [True, False])
def test_divergence_free_field_has_near_zero_divergence(periodic):
    # periodic: [0, 2 pi) without the end point; otherwise [0, pi] with both; dx != dy on purpose
    n = (64, 48)
    hx, hy = (2 * math.pi / k if periodic else math.pi / (k - 1) for k in n)
    X, Y = torch.meshgrid(torch.arange(n[0], dtype=torch.float64) * hx,
                          torch.arange(n[1], dtype=torch.float64) * hy, indexing="ij")
    v = torch.stack([torch.sin(X) * torch.cos(Y), -torch.cos(X) * torch.sin(Y)], -1)[None]
    # the same field with divergence cos x cos y + cos x cos y = 2 cos x cos y, for scale
    w = torch.stack([torch.sin(X) * torch.cos(Y), torch.cos(X) * torch.sin(Y)], -1)[None]
    h = max(hx, hy)
    assert L.divergence_penalty(v, (hx, hy), periodic) < h**4  # O(h^2) error, squared
    exact = 2 * torch.cos(X) * torch.cos(Y)
    assert (L.divergence(w, (hx, hy), periodic) - exact).abs().max() < h**2


def unit_square(n, m, dtype=torch.float64):
    """The periodic grid (i / n, j / m) of the unit square, meshed: (X, Y) [n, m]."""
    return torch.meshgrid(torch.arange(n, dtype=dtype) / n, torch.arange(m, dtype=dtype) / m, indexing="ij")


def solenoidal_and_known_divergence(X, Y):
    """v = (psi_y, -psi_x) for psi = sin(2 pi (x + 2 y)) + cos(2 pi 3 x) sin(2 pi 5 y) (divergence-free),
    and w = (a, b) with a = sin(2 pi 3 x) cos(2 pi 4 y), b = cos(2 pi x) sin(2 pi 2 y), whose divergence
    is 6 pi cos(2 pi 3 x) cos(2 pi 4 y) + 4 pi cos(2 pi x) cos(2 pi 2 y): ([1, n, m, 2] each, exact div)."""
    p = 2 * math.pi
    psi_x = p * torch.cos(p * (X + 2 * Y)) - 3 * p * torch.sin(3 * p * X) * torch.sin(5 * p * Y)
    psi_y = 2 * p * torch.cos(p * (X + 2 * Y)) + 5 * p * torch.cos(3 * p * X) * torch.cos(5 * p * Y)
    v = torch.stack([psi_y, -psi_x], -1)[None]
    w = torch.stack([torch.sin(3 * p * X) * torch.cos(4 * p * Y), torch.cos(p * X) * torch.sin(2 * p * Y)], -1)[None]
    div_w = 3 * p * torch.cos(3 * p * X) * torch.cos(4 * p * Y) + 2 * p * torch.cos(p * X) * torch.cos(2 * p * Y)
    return v, w, div_w[None]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_spectral_divergence_is_exact_for_band_limited_periodic_fields(dtype, tol):
    """On the periodic grid of the unit square (32 x 24: dx != dy), spectral derivatives are exact for
    modes below Nyquist: the solenoidal field's divergence is rounding (6e-7 of its gradient in
    float32, 1e-15 in float64) and the other field's divergence matches the analytic one; central
    differences err by up to (k h)^2 / 6 ~ 0.1 of it."""
    X, Y = unit_square(32, 24, dtype)
    v, w, exact = solenoidal_and_known_divergence(X, Y)
    spacing = (1 / 32, 1 / 24)
    gradient = float(L.velocity_gradient(v, spacing, periodic=True).square().sum((-2, -1)).mean().sqrt())
    assert float(L.divergence(v, spacing, periodic=True).square().mean().sqrt()) < tol * gradient
    scale = float(exact.abs().max())  # 10 pi
    assert float((L.divergence(w, spacing, periodic=True) - exact).abs().max()) < tol * scale
    assert float((L.divergence(w, spacing) - exact).abs().max()) > 0.05 * scale  # central differences


def test_velocity_gradient_matches_the_analytic_one_and_splits_into_divergence_and_curl():
    """dv_i/dx_j spectrally, against the hand derivatives; on a periodic domain the mean of |grad v|^2
    is mean (div v)^2 + mean (curl v)^2, so the solenoidal part carries none of the divergence."""
    X, Y = unit_square(32, 24)
    p = 2 * math.pi
    w = torch.stack([torch.sin(3 * p * X) * torch.cos(4 * p * Y), torch.cos(p * X) * torch.sin(2 * p * Y)], -1)[None]
    grad = L.velocity_gradient(w, (1 / 32, 1 / 24), periodic=True)
    assert grad.shape == (1, 32, 24, 2, 2)
    exact = torch.stack([
        torch.stack([3 * p * torch.cos(3 * p * X) * torch.cos(4 * p * Y),
                     -4 * p * torch.sin(3 * p * X) * torch.sin(4 * p * Y)], -1),
        torch.stack([-p * torch.sin(p * X) * torch.sin(2 * p * Y),
                     2 * p * torch.cos(p * X) * torch.cos(2 * p * Y)], -1),
    ], -2)[None]
    torch.testing.assert_close(grad, exact, rtol=0, atol=1e-11)
    div, curl = grad[..., 0, 0] + grad[..., 1, 1], grad[..., 1, 0] - grad[..., 0, 1]
    assert float(grad.square().sum((-2, -1)).mean()) == pytest.approx(float((div**2 + curl**2).mean()), rel=1e-12)


def test_spectral_divergence_prior_passes_the_analytic_gradient():
    """d/du mean((D_x u + D_y v)^2) = -(2 / N) D_x div: the spectral derivative is antisymmetric,
    D^T = -D. The prior's gradient must reach the velocity, also from a bf16 decoder output."""
    X, Y = unit_square(16, 12)
    _, w, _ = solenoidal_and_known_divergence(X, Y)
    w = w.clone().requires_grad_(True)
    spacing = (1 / 16, 1 / 12)
    L.divergence_penalty(w, spacing, periodic=True).backward()
    div = L.divergence(w.detach(), spacing, periodic=True)
    n = div.numel()
    torch.testing.assert_close(w.grad[..., 0], -2 / n * L.derivative(div, spacing[0], 1, periodic=True))
    torch.testing.assert_close(w.grad[..., 1], -2 / n * L.derivative(div, spacing[1], 2, periodic=True))
    half = w.detach().bfloat16().requires_grad_(True)
    penalty = L.divergence_penalty(half, spacing, periodic=True)
    penalty.backward()
    assert penalty.dtype == torch.float32 and half.grad.dtype == torch.bfloat16 and half.grad.abs().sum() > 0


def test_periodicity_comes_from_the_dataset_attribute():
    assert L.periodic_domain({"pde_periodic": 1}) and not L.periodic_domain({"pde_Nu": 1e-3})
    with pytest.raises(UptError, match="data.nc: attribute pde_periodic must be 0 or 1"):
        L.periodic_domain({"pde_periodic": 2}, "data.nc")


def test_combine_weights_values_and_skips_zero_weight_thunks():
    def boom():
        raise AssertionError("a zero-weight term was evaluated")

    total, values = L.combine({"a": (2.0, lambda: torch.tensor(3.0)), "b": (0.0, boom),
                               "c": (0.5, lambda: torch.tensor(4.0))})
    assert total == 8.0 and set(values) == {"a", "c"} and values["c"] == 4.0
    with pytest.raises(ValueError, match="every loss weight is zero"):
        L.combine({"b": (0, boom)})
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            L.combine({"a": (bad, lambda: torch.tensor(1.0))})


# ---------------------------------------------------------------- gradient flow through real modules

GRID = (8, 8)


def setup_2d(history=1, fields=2):
    model = build_model("upt-tiny", dim_space=2, fields=fields, history=history, cond_dim=1, grid_shape=GRID)
    pos = grid_pos(*GRID).expand(2, -1, -1)
    u = torch.randn(2, pos.shape[1], history * fields)
    return model, u, pos


def encode_fn(model):
    return lambda u, pos: model.encode(u, pos, GRID)


def term(name, model, u, pos):
    """A thunk computing loss term ``name`` on the model, with the data and targets of one batch."""
    cond = torch.rand(2, 3, 1)
    target = torch.randn(2, pos.shape[1], model.fields)
    rollout_target = torch.randn(2, 3, pos.shape[1], model.fields)
    spacing = (1 / (GRID[0] - 1), 1 / (GRID[1] - 1))
    enc = encode_fn(model)
    return {
        "next_step": lambda: L.next_step_mse(model(u, pos, pos, cond[:, 0], GRID), target),
        "rollout": lambda: L.rollout_mse(model.rollout(u, pos, cond, 3, grid_shape=GRID),
                                         rollout_target, discount=0.9),
        "spectral": lambda: L.spectral_loss(model(u, pos, pos, cond[:, 0], GRID), target, GRID),
        "mean": lambda: L.mean_consistency(model(u, pos, pos, cond[:, 0], GRID), target),
        "inverse_encoding": lambda: L.inverse_encoding_loss(enc, model.decode, u, pos),
        "inverse_decoding": lambda: L.inverse_decoding_loss(enc, model.decode, enc(u, pos), pos),
        "latent_norm": lambda: L.latent_norm_penalty(enc(u, pos)),
        # rolled-out latents against the (frozen) true ones: trains the approximator only
        "latent_drift": lambda: L.latent_drift(
            torch.stack([model.step(enc(u, pos).detach(), cond[:, s]) for s in range(3)], 1),
            torch.randn(2, 3, *enc(u, pos).shape[1:]).detach()),
        # the decoder alone is trained here: the latent comes from a frozen upstream
        "divergence": lambda: L.divergence_penalty(
            model.decode(enc(u, pos).detach(), pos).reshape(2, *GRID, 2), spacing),
    }[name]


def grad_norms(model):
    """Total gradient norm of each of E, A, D (0 where no gradient arrived)."""
    return {
        part: sum(float(p.grad.norm()) for p in getattr(model, part).parameters() if p.grad is not None)
        for part in ("encoder", "approximator", "decoder")
    }


# term -> (parts it must train, parts it must leave alone)
TRAINS = {
    "next_step": ({"encoder", "approximator", "decoder"}, set()),
    "rollout": ({"encoder", "approximator", "decoder"}, set()),
    "spectral": ({"encoder", "approximator", "decoder"}, set()),
    "mean": ({"encoder", "approximator", "decoder"}, set()),
    "inverse_encoding": ({"encoder", "decoder"}, {"approximator"}),
    "inverse_decoding": ({"encoder", "decoder"}, {"approximator"}),
    "latent_norm": ({"encoder"}, {"approximator", "decoder"}),
    "latent_drift": ({"approximator"}, {"encoder", "decoder"}),
    "divergence": ({"decoder"}, {"encoder", "approximator"}),
}


@pytest.mark.parametrize("name", list(TRAINS))
def test_term_gradient_reaches_the_modules_it_trains(name):
    model, u, pos = setup_2d()
    term(name, model, u, pos)().backward()
    norms = grad_norms(model)
    trains, spares = TRAINS[name]
    assert all(norms[p] > 0 for p in trains), norms
    assert all(norms[p] == 0 for p in spares), norms


def test_inverse_decoding_trains_encoder_even_with_a_detached_latent():
    """The stop-gradient on the target must not cut the encoder: E is trained through E(D(z))."""
    model, u, pos = setup_2d()
    enc = encode_fn(model)
    z = enc(u, pos).detach()
    L.inverse_decoding_loss(enc, model.decode, z, pos).backward()
    norms = grad_norms(model)
    assert norms["encoder"] > 0 and norms["decoder"] > 0, norms


def test_inverse_losses_with_history_context():
    """history 2, one field: E reads [previous, latest]; D returns one frame."""
    model, u, pos = setup_2d(history=2, fields=1)
    enc = encode_fn(model)
    explicit = L.inverse_encoding_loss(enc, model.decode, u, pos, target=u[..., 1:])
    assert L.inverse_encoding_loss(enc, model.decode, u, pos) == explicit  # default target: latest frame
    loss = L.inverse_decoding_loss(enc, model.decode, enc(u, pos), pos, context=u[..., :1])
    loss.backward()
    norms = grad_norms(model)
    assert norms["encoder"] > 0 and norms["decoder"] > 0, norms


def test_inverse_encoding_on_padded_point_cloud():
    model = build_model("upt-tiny", dim_space=2, fields=1, cond_dim=1, encoder="mesh")
    pos, u = torch.rand(2, 40, 2), torch.randn(2, 40, 1)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False

    def encode(v, p):
        return model.encode(v, p, mask=mask)

    loss = L.inverse_encoding_loss(encode, model.decode, u, pos, mask=mask)
    loss.backward()
    norms = grad_norms(model)
    assert torch.isfinite(loss) and norms["encoder"] > 0 and norms["decoder"] > 0, norms


@pytest.mark.parametrize("name", [n for n in TRAINS if n != "next_step"])
def test_zero_weight_removes_the_term_from_the_update(name):
    """One SGD step on next_step + w * term: w = 1 and w = 0 give different weights, and w = 0 never
    evaluates the term."""
    torch.manual_seed(1)
    init, u, pos = setup_2d()
    after = {}
    for weight in (1.0, 0.0):
        model = build_model("upt-tiny", dim_space=2, fields=2, cond_dim=1, grid_shape=GRID)
        model.load_state_dict(init.state_dict())
        torch.manual_seed(2)  # same targets in both runs
        calls = []
        thunk = term(name, model, u, pos)
        total, values = L.combine({"next_step": (1.0, term("next_step", model, u, pos)),
                                   name: (weight, lambda: calls.append(1) or thunk())})
        assert len(calls) == (weight != 0) and (name in values) == (weight != 0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        total.backward()
        opt.step()
        after[weight] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(after[1.0], after[0.0])
