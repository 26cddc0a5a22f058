"""Models: shapes, resolution and point-order freedom, conditioning, gradients, rollouts, sizes."""

import pytest
import torch

from upt.errors import UptError
from upt.models import PRESETS, AnyPointDecoder, GridEncoder, LatentDenoiser, MeshParticleEncoder
from upt.models import PureTransformer, UShapedTransformer, build_model, count_parameters
from upt.models import log_clamp, parameter_table
from upt.models.layers import Block, DropPath

from grids import grid_pos


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def wake_zero_inits(module):
    """Give every all-zero parameter (adaLN-Zero gates, zero output layers) small random values.

    Under adaLN-Zero the conditioned blocks are the identity at initialisation and most weights
    get exactly zero gradient on the first step, by design. Waking those parameters tests the
    wiring (every parameter on a differentiable path to the output) rather than the init.
    """
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    return module


def tiny(dim_space, encoder="grid", approximator=None, fields=1, history=1, **overrides):
    return build_model(
        "upt-tiny", dim_space=dim_space, fields=fields, history=history, cond_dim=2,
        encoder=encoder, approximator=approximator, **overrides,
    )


@pytest.mark.parametrize("dim_space, shapes, tokens", [(1, [(32,), (64,)], 8), (2, [(8, 8), (16, 16)], 4),
                                                       (2, [(16, 12), (32, 24)], 12)])
def test_grid_encoder_accepts_any_divisible_resolution(dim_space, shapes, tokens):
    enc = GridEncoder(dim_space, in_channels=3, dim=16, tokens=tokens, heads=2, depth=1, patch_size=4)
    for shape in shapes:  # the patch tokens themselves, or local means of them on a finer grid
        pos = grid_pos(*shape).expand(2, -1, -1)
        assert enc(torch.randn(2, pos.shape[1], 3), pos, shape).shape == (2, tokens, 16)
    with pytest.raises(ValueError, match="divisible"):
        enc(torch.randn(2, 30, 3), torch.rand(2, 30, dim_space), (30,) * dim_space)


def mesh_encoder(dim_space=2):
    return MeshParticleEncoder(
        dim_space, in_channels=3, dim=16, tokens=8, heads=2, depth=1, supernodes=8, neighbours=4
    ).eval()


@pytest.mark.parametrize("dim_space", [2, 3])
def test_mesh_encoder_is_invariant_to_point_order(dim_space):
    enc = mesh_encoder(dim_space)
    u, pos = torch.randn(2, 40, 3), torch.rand(2, 40, dim_space)
    perm = torch.randperm(40)
    z = enc(u, pos)
    assert z.shape == (2, 8, 16)
    torch.testing.assert_close(enc(u[:, perm], pos[:, perm]), z, atol=1e-5, rtol=1e-5)


def test_mesh_encoder_padded_batch_equals_unpadded_samples():
    enc = mesh_encoder()
    counts = [25, 40]
    samples = [(torch.randn(1, n, 3), torch.rand(1, n, 2)) for n in counts]
    # Padding holds wild values, so any leak of it into the result would show.
    u, pos = torch.full((2, 40, 3), 1e3), torch.full((2, 40, 2), 1e3)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    for i, (n, (ui, pi)) in enumerate(zip(counts, samples)):
        u[i, :n], pos[i, :n], mask[i, :n] = ui[0], pi[0], True
    z = enc(u, pos, mask=mask)
    for i, (ui, pi) in enumerate(samples):
        torch.testing.assert_close(z[i : i + 1], enc(ui, pi), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="supernodes"):
        enc(u[:, :5], pos[:, :5])


@pytest.mark.parametrize("cls, extra", [(PureTransformer, {}), (UShapedTransformer, {"levels": 1})])
def test_approximator_keeps_shape_and_starts_as_persistence(cls, extra):
    approx = cls(dim=16, hidden=32, depth=3, heads=2, cond_dim=2, **extra)
    z, cond = torch.randn(2, 8, 16), torch.rand(2, 2)
    # adaLN-Zero blocks and the zero output layer: an untrained stepper copies the state.
    torch.testing.assert_close(approx(z, cond), z)
    wake_zero_inits(approx)
    out = approx(z, cond)
    assert out.shape == z.shape and not torch.allclose(out, z)


@pytest.mark.parametrize("levels", [1, 2])
def test_ushaped_skips_carry_full_resolution_detail(levels):
    depth = 2 * levels + 1
    approx = UShapedTransformer(dim=16, hidden=16, depth=depth, heads=2, cond_dim=2, levels=levels)
    wake_zero_inits(approx)
    z, cond = torch.randn(2, 8, 16), torch.rand(2, 2)
    update = approx(z, cond) - z
    assert update.shape == z.shape
    # The tokens of a pooled pair differ only through the skip connections ...
    assert (update[:, 0::2] - update[:, 1::2]).abs().max() > 1e-3
    with torch.no_grad():  # ... so cutting the outermost skip (merge reads [upsampled, skip]) ...
        approx.merge[-1].weight[:, 16:] = 0
    update = approx(z, cond) - z
    # ... leaves the pooled pairs identical: repeat + per-token ops + attention cannot split them.
    torch.testing.assert_close(update[:, 0::2], update[:, 1::2], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="halved"):
        approx(torch.randn(2, 7, 16), cond)


def test_adaln_block_is_identity_at_init_and_learns_to_use_the_condition():
    block = Block(16, 2, cond_dim=8)
    x, c1, c2 = torch.randn(2, 5, 16), torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(block(x, c1), x)
    torch.testing.assert_close(block(x, c2), x)
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    ((block(x, c1) - torch.randn_like(x)) ** 2).mean().backward()
    opt.step()
    assert not torch.allclose(block(x, c1), block(x, c2), atol=1e-6)


def test_approximator_learns_to_use_cond_within_a_few_steps():
    approx = PureTransformer(dim=16, hidden=16, depth=2, heads=2, cond_dim=2)
    z, cond = torch.randn(4, 8, 16), torch.rand(4, 2)
    target = torch.randn_like(z)
    opt = torch.optim.Adam(approx.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        ((approx(z, cond) - target) ** 2).mean().backward()
        opt.step()
    assert not torch.allclose(approx(z, cond), approx(z, torch.rand(4, 2)), atol=1e-6)


def test_drop_path_is_identity_in_eval_and_drops_whole_samples_in_train():
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 4)
    assert torch.equal(drop.eval()(x), x)
    per_sample = drop.train()(x).flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and rescaled
    assert (per_sample == per_sample[:, :1]).all()
    approx = PureTransformer(dim=16, hidden=16, depth=2, heads=2, cond_dim=2, drop_path=0.5)
    wake_zero_inits(approx)
    assert [b.drop_path.p for b in approx.blocks] == [0.0, 0.5]  # linear over depth
    z, cond = torch.randn(8, 8, 16), torch.rand(8, 2)
    torch.testing.assert_close(approx.eval()(z, cond), approx(z, cond))
    assert not torch.allclose(approx.train()(z, cond), approx(z, cond))


def test_decoder_evaluates_each_point_independently():
    dec = AnyPointDecoder(2, dim=16, fields=3, heads=2, layers=2, hidden=16)
    z, query = torch.randn(2, 8, 16), torch.rand(2, 50, 2)
    u = dec(z, query)
    assert u.shape == (2, 50, 3)
    torch.testing.assert_close(dec(z, query[:, 10:20]), u[:, 10:20], atol=1e-6, rtol=1e-5)


def test_log_clamp_is_identity_near_zero_and_grows_logarithmically():
    c = 10.0
    x = torch.logspace(-4, 8, 200, dtype=torch.float64)
    y = log_clamp(x, c)
    torch.testing.assert_close(log_clamp(-x, c), -y)  # odd
    assert (y.diff() > 0).all()  # monotone, hence invertible
    small = x < 1e-2
    assert ((y[small] - x[small]).abs() <= x[small] ** 2 / (2 * c)).all()
    assert y.max() < c * 17  # 1e8 -> ~161
    dec = AnyPointDecoder(1, dim=16, fields=2, heads=2, layers=1, hidden=16)
    z, query = 1e3 * torch.randn(2, 8, 16), torch.rand(2, 20, 1)
    raw = dec(z, query)
    dec.log_clamp = c
    torch.testing.assert_close(dec(z, query), log_clamp(raw, c))


@pytest.mark.parametrize(
    "dim_space, encoder, approximator",
    [(1, "grid", "pure"), (2, "grid", "ushaped"), (3, "mesh", "pure")],
)
def test_gradient_reaches_every_parameter_of_the_composite(dim_space, encoder, approximator):
    model = wake_zero_inits(tiny(dim_space, encoder, approximator, fields=2, history=2))
    shape = {1: (32,), 2: (8, 8), 3: None}[dim_space]
    pos = (grid_pos(*shape) if shape else torch.rand(1, 40, 3)).expand(2, -1, -1)
    u = torch.randn(2, pos.shape[1], 4)
    out = model(u, pos, torch.rand(2, 7, dim_space), torch.rand(2, 2), grid_shape=shape)
    assert out.shape == (2, 7, 2)
    out.square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []


def test_composite_decodes_off_the_training_grid():
    model = tiny(1).eval()
    pos, fine = grid_pos(32).expand(2, -1, -1), grid_pos(64).expand(2, -1, -1)
    scattered = torch.rand(2, 17, 1)
    u, cond = torch.randn(2, 32, 1), torch.rand(2, 2)
    assert model(u, pos, fine, cond, grid_shape=(32,)).shape == (2, 64, 1)
    assert model(u, pos, scattered, cond, grid_shape=(32,)).shape == (2, 17, 1)
    # Decoded pointwise: asking for more points at once changes nothing at the shared ones.
    together = model(u, pos, torch.cat([scattered, fine], 1), cond, grid_shape=(32,))
    torch.testing.assert_close(together[:, 17:], model(u, pos, fine, cond, grid_shape=(32,)))


@pytest.mark.parametrize("encoder, shape", [("grid", (8, 8)), ("mesh", None)])
def test_rollout_modes(encoder, shape):
    model = wake_zero_inits(tiny(2, encoder, fields=2, history=2)).eval()
    pos = (grid_pos(*shape) if shape else torch.rand(1, 30, 2)).expand(2, -1, -1)
    u, cond, query = torch.randn(2, pos.shape[1], 4), torch.rand(2, 3, 2), torch.rand(2, 5, 2)
    kw = dict(grid_shape=shape)
    for mode in ("latent", "physical"):
        assert model.rollout(u, pos, cond, 3, query, mode=mode, **kw).shape == (2, 3, 5, 2)
        assert model.rollout(u, pos, cond, 3, mode=mode, **kw).shape == (2, 3, pos.shape[1], 2)
        one = model.rollout(u, pos, cond, 1, query, mode=mode, **kw)
        torch.testing.assert_close(one[:, 0], model(u, pos, query, cond[:, 0], **kw))
    latent = model.rollout(u, pos, cond, 3, query, mode="latent", **kw)
    physical = model.rollout(u, pos, cond, 3, query, mode="physical", **kw)
    for mode, full in (("latent", latent), ("physical", physical)):  # decoding only the horizon's end
        last = model.rollout(u, pos, cond, 3, query, mode=mode, last_only=True, **kw)
        torch.testing.assert_close(last, full[:, -1:])
    torch.testing.assert_close(latent[:, 0], physical[:, 0])
    assert not torch.allclose(latent[:, 1:], physical[:, 1:])  # physical mode re-encodes
    with pytest.raises(ValueError, match="steps"):
        model.rollout(u, pos, cond, 4, **kw)


def test_denoiser_shape_and_inputs():
    net = LatentDenoiser(dim=16, depth=2, heads=2)
    x_t, cond_tokens, t = torch.randn(2, 8, 16), torch.randn(2, 8, 16), torch.rand(2)
    assert torch.equal(net(x_t, t, cond_tokens), torch.zeros_like(x_t))  # zero output layer
    wake_zero_inits(net)
    out = net(x_t, t, cond_tokens)
    assert out.shape == (2, 8, 16)
    assert not torch.allclose(net(x_t, torch.rand(2), cond_tokens), out)
    assert not torch.allclose(net(x_t, t, torch.randn(2, 8, 16)), out)
    scalar_t = net(x_t, torch.tensor(0.3), cond_tokens)  # one diffusion time for the batch
    torch.testing.assert_close(scalar_t, net(x_t, torch.full((2,), 0.3), cond_tokens))


def test_presets_build_with_overrides():
    table = parameter_table()
    assert all(name in table for name in PRESETS)
    model = tiny(1, tokens=16, dim=8, drop_path=0.2, log_clamp=5.0, approximator="ushaped", patch_size=2)
    assert model.encode(torch.randn(1, 32, 1), grid_pos(32), (32,)).shape == (1, 16, 8)
    assert isinstance(model.approximator, UShapedTransformer)
    assert model.approximator.up[-1][-1].drop_path.p == pytest.approx(0.2)
    assert model.decoder.log_clamp == 5.0
    with pytest.raises(UptError, match="toks"):
        tiny(1, toks=3)
    with pytest.raises(UptError, match="preset"):
        build_model("upt-huge", dim_space=1, fields=1)
    with pytest.raises(UptError, match="patch_size"):
        build_model("upt-tiny", dim_space=1, fields=1, grid_shape=(30,))
    with torch.device("meta"):
        model = build_model("upt-17m", dim_space=1, fields=1, cond_dim=2)
    assert 15e6 < count_parameters(model) < 19e6


def test_upt17m_forward_backward_on_cpu():
    model = build_model("upt-17m", dim_space=1, fields=1, cond_dim=2, grid_shape=(256,))
    pos = grid_pos(256).expand(2, -1, -1)
    out = model(torch.randn(2, 256, 1), pos, pos, torch.rand(2, 2), grid_shape=(256,))
    assert out.shape == (2, 256, 1)
    out.square().mean().backward()
    assert model.decoder.heads[0][-1].weight.grad.any()


@pytest.mark.parametrize("dim_space, grid, factor", [(1, (32,), 2), (1, (32,), 4), (2, (16, 16), 2)])
def test_grid_encoder_latent_is_the_patch_tokens_or_their_local_means(dim_space, grid, factor):
    """tokens = patches: the patch tokens themselves (no pooling); fewer tokens: each token is the
    mean of its f (1D) or f x f (2D) block of neighbouring patch tokens, the same weights."""
    coarse = [n // 4 for n in grid]
    patches = int(torch.tensor(coarse).prod())
    enc = GridEncoder(dim_space, in_channels=2, dim=8, tokens=patches, heads=2, depth=1, patch_size=4).eval()
    pos = grid_pos(*grid).expand(3, -1, -1)
    u = torch.randn(3, pos.shape[1], 2)
    full = enc(u, pos, grid)
    assert full.shape == (3, patches, 8) and enc.pool is None
    enc.tokens = patches // factor**dim_space
    pooled = enc(u, pos, grid)
    if dim_space == 1:
        expected = full.reshape(3, coarse[0] // factor, factor, 8).mean(2)
    else:
        blocks = full.reshape(3, coarse[0] // factor, factor, coarse[1] // factor, factor, 8)
        expected = blocks.mean((2, 4)).reshape(3, -1, 8)
    torch.testing.assert_close(pooled, expected)
    enc.tokens = 3
    with pytest.raises(ValueError, match="do not tile"):
        enc(u, pos, grid)


def test_position_features_are_band_limited_to_the_training_grid():
    from upt.models.sizes import band_limit

    assert [band_limit(n) for n in (8, 32, 100, 128)] == [3, 5, 6, 7]
    model = build_model("upt-cpu-s", dim_space=1, fields=1, grid_shape=(128,))
    enc_freqs = model.encoder.pos_embed[0].freqs
    dec_freqs = model.decoder.query_embed[0].freqs
    # finest feature at or below half the Nyquist frequency of the patch grid (32) and point grid (128)
    assert enc_freqs.max() == pytest.approx(torch.pi * 16) and dec_freqs.max() == pytest.approx(torch.pi * 64)
    # so on the training points no feature is constant or a pure +-1 alternation
    x = (torch.arange(128) + 0.5) / 128
    angles = x[:, None] * dec_freqs
    for values in (angles.sin(), angles.cos()):
        assert (values.std(0) > 0.1).all()
        assert not torch.allclose(values[1:] * values[:-1], -values[:-1] ** 2)


@pytest.mark.parametrize("fraction, octaves", [(1.0, 5), (0.5, 4), (0.25, 4), (0.0625, 3)])
def test_mesh_encoder_position_features_follow_the_point_cloud_spacing(fraction, octaves):
    """The mesh encoder sees the points, not patches: on 32 x 32 with a fraction f observed, the
    spacing per axis is that of 32 sqrt(f) points (32 -> 5 octaves, 22.6 -> 4, 16 -> 4, 8 -> 3),
    where the grid encoder with 4 x 4 patches sees an 8 x 8 patch grid (3 octaves)."""
    mesh = build_model("upt-cpu-s", dim_space=2, fields=2, grid_shape=(32, 32), encoder="mesh",
                       observed_fraction=fraction)
    assert mesh.encoder.fourier.freqs.max() == pytest.approx(torch.pi * 2 ** (octaves - 1))
    grid = build_model("upt-cpu-s", dim_space=2, fields=2, grid_shape=(32, 32), patch_size=4, tokens=64)
    assert grid.encoder.pos_embed[0].freqs.max() == pytest.approx(torch.pi * 4)
    assert mesh.decoder.query_embed[0].freqs.max() == grid.decoder.query_embed[0].freqs.max()


def test_perceiver_pooling_is_kept_as_an_ablation_and_takes_any_token_count():
    model = build_model("upt-cpu-s", dim_space=1, fields=1, grid_shape=(128,), pooling="perceiver", tokens=12)
    assert model.encode(torch.randn(2, 128, 1), grid_pos(128).expand(2, -1, -1), (128,)).shape == (2, 12, 32)
    with pytest.raises(ValueError, match="pooling"):
        GridEncoder(1, 1, dim=8, tokens=4, heads=2, depth=1, patch_size=4, pooling="max")


# --- periodic domains -----------------------------------------------------------------------------

def test_periodic_position_features_repeat_every_period_and_use_integer_wavenumbers():
    from upt.models.layers import FourierFeatures

    periodic, plain = FourierFeatures(2, 5, periodic=True), FourierFeatures(2, 5)
    # octaves 2 pi * (2, 4, 8, 16): integer wavenumbers up to the plain features' finest, 16 pi
    torch.testing.assert_close(periodic.freqs, 2 * torch.pi * torch.tensor([1.0, 2.0, 4.0, 8.0]))
    assert periodic.out_dim == 2 * 2 * 4 and plain.out_dim == 2 * (2 * 5 + 1)
    x = torch.rand(50, 2)
    for shift in ([1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]):
        torch.testing.assert_close(periodic(x + torch.tensor(shift)), periodic(x), atol=1e-4, rtol=0)
    assert (plain(x + torch.tensor([1.0, 0.0])) - plain(x)).abs().max() > 0.5  # x and sin(pi x) are not


@pytest.mark.parametrize("dim_space, shape", [(1, (7,)), (2, (5, 6))])
def test_circular_stem_equals_the_zero_padded_stem_on_a_tiled_input(dim_space, shape):
    from upt.models.encoders import ResidualConv

    circular, zeros = ResidualConv(8, dim_space, periodic=True), ResidualConv(8, dim_space)
    zeros.load_state_dict(circular.state_dict())
    x = torch.randn(2, 8, *shape)
    tiled = x.repeat(1, 1, *[3] * dim_space)  # the field and a copy on each side, per axis
    middle = (slice(None), slice(None)) + tuple(slice(n, 2 * n) for n in shape)
    # the stem reads 2 cells each side; the tiles supply exactly the wrapped-around ones
    torch.testing.assert_close(circular(x), zeros(tiled)[middle])
    assert not torch.allclose(circular(x), zeros(x), atol=1e-4)  # zero padding differs at the ends


@pytest.mark.parametrize("dim_space, grid, fine", [(1, (32,), (64,)), (2, (8, 8), (16, 16))])
def test_periodic_model_runs_at_any_resolution_and_decodes_x_and_x_plus_l_alike(dim_space, grid, fine):
    model = tiny(dim_space, periodic=True, grid_shape=grid).eval()
    assert model.encoder.stem.body[1].padding_mode == "circular"
    cond = torch.rand(2, 2)
    for shape in (grid, fine):  # the training grid and a finer one (super-resolution)
        pos = grid_pos(*shape).expand(2, -1, -1) * (1 - 1 / shape[0])  # points of [0, 1)
        u = torch.randn(2, pos.shape[1], 1)
        z = model.encode(u, pos, shape)
        assert z.shape == (2, 4, 16) and model(u, pos, pos, cond, shape).shape == (2, pos.shape[1], 1)
        torch.testing.assert_close(model.decode(z, pos + 1.0), model.decode(z, pos), atol=1e-4, rtol=1e-4)
    with pytest.raises(UptError, match="periodic"):
        tiny(dim_space, periodic="yes", grid_shape=grid)


@pytest.mark.parametrize("periodic", [True, False])
def test_periodic_mesh_encoder_sees_a_whole_period_shift_as_the_same_cloud(periodic):
    enc = MeshParticleEncoder(2, 1, dim=16, tokens=4, heads=2, depth=1, supernodes=8, neighbours=4,
                              periodic=periodic).eval()
    pos, u = torch.rand(2, 40, 2), torch.randn(2, 40, 1)
    shifted = pos + torch.tensor([1.0, -1.0])  # the same points, one period away on both axes
    same = torch.allclose(enc(u, shifted), enc(u, pos), atol=1e-4)
    assert same == periodic
