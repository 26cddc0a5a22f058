"""The FNO baselines: modes kept as configured (neuralop's count converted), PDEBench's own FNO
layer for layer (parameter count by hand, modes, shapes, gradients), its training protocol (step
decay, rollout unrolled over the whole trajectory) and the prepared GPU script's CPU smoke mode."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from upt.errors import UptError
from upt.models.factory import model_from_spec
from upt.models.fno import neuralop_modes
from upt.models.fno_pdebench import SpectralConv1d, SpectralConv2d
from upt.settings import TrainSettings

REPO = Path(__file__).resolve().parents[1]


def pdebench_spec(dim_space=1, fields=1, history=10, **kwargs):
    return {"family": "fno", "variant": "pdebench", "dim_space": dim_space, "fields": fields, "history": history,
            "cond_dim": 1, "modes": 12, "hidden": 20, "layers": 4, **kwargs}


def cosine(k: int, n: int) -> torch.Tensor:
    return torch.cos(2 * math.pi * k * torch.arange(n) / n)


@pytest.mark.parametrize("modes", [1, 7, 12, 16])
def test_neuralop_fno_keeps_the_configured_modes_on_the_last_axis(modes):
    from neuralop.layers.spectral_convolution import SpectralConv

    conv = SpectralConv(1, 1, n_modes=neuralop_modes(modes, 1))
    assert conv.weight.shape[-1] == modes  # one complex weight per kept mode
    with torch.no_grad():
        conv.weight.tensor.fill_(1.0)  # the identity on every kept mode
        conv.bias.zero_()
    n = 64
    kept, dropped = (conv(cosine(k, n)[None, None])[0, 0] for k in (modes - 1, modes))
    torch.testing.assert_close(kept, cosine(modes - 1, n), atol=1e-5, rtol=0)
    torch.testing.assert_close(dropped, torch.zeros(n), atol=1e-5, rtol=0)


def test_neuralop_fno_keeps_both_signs_of_the_first_axis_in_2d():
    model = model_from_spec({"family": "fno", "dim_space": 2, "fields": 1, "modes": 16, "hidden": 4, "layers": 1})
    (spectral,) = [p for p in model.parameters() if p.is_complex()]
    assert spectral.shape == (4, 4, 32, 16)  # -16..15 x 0..15, as PDEBench's two 16 x 16 blocks
    assert neuralop_modes(16, 2) == (32, 31)
    with pytest.raises(UptError, match="modes must be a whole number"):
        neuralop_modes(0, 1)


def test_pdebench_fno1d_has_pdebenchs_parameter_count():
    width, modes, initial_step, channels, layers = 20, 12, 10, 1, 4
    by_hand = ((initial_step * channels + 1) * width + width        # fc0: history and the grid x -> width
               + layers * width * width * modes                     # SpectralConv1d weights1 (complex: 1 each)
               + layers * (width * width + width)                   # the 1x1 Conv1d w0..w3
               + width * 128 + 128 + 128 * channels + channels)     # fc1, fc2
    assert by_hand == 23937
    model = model_from_spec(pdebench_spec())
    assert sum(p.numel() for p in model.parameters()) == by_hand


def test_pdebench_fno2d_parameter_count_and_modes():
    model = model_from_spec(pdebench_spec(dim_space=2, fields=2, history=3))
    by_hand = (3 * 2 + 2) * 20 + 20 + 4 * 2 * 20 * 20 * 12 * 12 + 4 * (20 * 20 + 20) + 20 * 128 + 128 + 128 * 2 + 2
    assert sum(p.numel() for p in model.parameters()) == by_hand
    assert model.fno.convs[0].weights1.shape == model.fno.convs[0].weights2.shape == (20, 20, 12, 12)


def test_pdebench_spectral_conv_keeps_exactly_12_modes():
    conv = SpectralConv1d(1, 1, 12)
    assert conv.weights1.shape == (1, 1, 12)
    with torch.no_grad():
        conv.weights1.fill_(1.0)
    n = 64
    torch.testing.assert_close(conv(cosine(11, n)[None, None])[0, 0], cosine(11, n), atol=1e-5, rtol=0)
    torch.testing.assert_close(conv(cosine(12, n)[None, None])[0, 0], torch.zeros(n), atol=1e-5, rtol=0)


def test_pdebench_spectral_conv2d_keeps_negative_first_axis_frequencies():
    conv = SpectralConv2d(1, 1, 3, 3)
    with torch.no_grad():
        conv.weights1.fill_(1.0)
        conv.weights2.fill_(1.0)
    n = 16
    y = torch.arange(n)
    # -3..2 x 0..2 kept; k2 > 0, where one half-spectrum coefficient holds the whole cosine
    for k1, k2, kept in ((2, 1, True), (-3, 2, True), (3, 1, False), (-4, 2, False), (1, 3, False)):
        x = torch.cos(2 * math.pi * (k1 * y[:, None] + k2 * y[None, :]) / n)
        out = conv(x[None, None])[0, 0]
        torch.testing.assert_close(out, x if kept else torch.zeros(n, n), atol=1e-5, rtol=0)


@pytest.mark.parametrize("grid_shape", [(40,), (16, 12)])
def test_pdebench_surrogate_shapes_rollout_and_gradients(grid_shape):
    d, fields, history, b = len(grid_shape), 2, 3, 2
    model = model_from_spec(pdebench_spec(dim_space=d, fields=fields, history=history, modes=4, hidden=8))
    n = math.prod(grid_shape)
    axes = torch.meshgrid(*[(torch.arange(s) + 0.5) / s for s in grid_shape], indexing="ij")
    pos = torch.stack(axes, -1).reshape(1, n, d).expand(b, -1, -1)
    u = torch.randn(b, n, history * fields)
    frame = model(u, pos, pos, torch.zeros(b, 1), grid_shape)
    assert frame.shape == (b, n, fields)
    frames = model.rollout(u, pos, torch.zeros(b, 5, 1), 5, grid_shape=grid_shape)
    assert frames.shape == (b, 5, n, fields)
    torch.testing.assert_close(frames[:, 0], frame)
    frames.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(UptError, match="only 'physical'"):
        model.rollout(u, pos, torch.zeros(b, 5, 1), 5, grid_shape=grid_shape, mode="latent")


def test_pdebench_variant_refuses_what_pdebench_fno_cannot_do():
    with pytest.raises(UptError, match="no PDE parameters"):
        model_from_spec(pdebench_spec(cond_dim=2))
    with pytest.raises(UptError, match="unknown FNO variant 'zongyi'"):
        model_from_spec(pdebench_spec(variant="zongyi"))
    model = model_from_spec(pdebench_spec(modes=12, history=1))
    pos = torch.rand(1, 16, 1)
    with pytest.raises(UptError, match="lower model.modes"):  # 16 + 2 padded points: 10 real-FFT modes
        model(torch.zeros(1, 16, 1), pos, pos, torch.zeros(1, 1), (16,))


def test_fno_stage_spec_defaults_to_pdebench_sizes_and_matches_a_budget():
    from upt.training.stages import FNOStage

    dims = {"dim_space": 1, "fields": 1, "history": 10, "cond_dim": 1}
    spec = FNOStage.model_spec({"family": "fno", "variant": "pdebench"}, dims, (64,))
    assert (spec["modes"], spec["hidden"], spec["variant"]) == (12, 20, "pdebench")
    upt = {"preset": "upt-cpu-s"}
    target = sum(p.numel() for p in model_from_spec({**upt, **dims, "grid_shape": [128]}).parameters())
    matched = FNOStage.model_spec({"family": "fno", "variant": "pdebench", "match": upt}, dims, (128,))

    def miss(hidden):
        return abs(sum(p.numel() for p in model_from_spec(pdebench_spec(hidden=hidden)).parameters()) - target)
    h = matched["hidden"]
    assert miss(h) <= min(miss(h - 1), miss(h + 1)) and miss(h) < 0.05 * target


def test_step_decay_halves_every_lr_step_epochs():
    from upt.training.loop import step_decay

    factor = step_decay(steps_per_epoch=3, every_epochs=2, gamma=0.5)
    assert [factor(s) for s in (0, 5, 6, 11, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_settings_check_schedule_and_whole_trajectory_horizon():
    def raw(**stage):
        return {"seed": 0, "model": {"family": "fno", "variant": "pdebench"}, "stage": stage}

    parsed = TrainSettings.parse(raw(schedule="step", horizon=None), "fno")
    assert parsed.stage.horizon is None and parsed.stage.loop(0).schedule == "step"
    with pytest.raises(UptError, match="stage.schedule must be one of cosine, step"):
        TrainSettings.parse(raw(schedule="linear"), "fno")
    with pytest.raises(UptError, match="lr_gamma"):
        TrainSettings.parse(raw(lr_gamma=0.0), "fno")
    with pytest.raises(UptError, match="horizon null"):
        TrainSettings.parse({**raw(horizon=None), "model": {"preset": "upt-tiny"}}, "operator")


def test_fno_pdebench_protocol_trains_over_the_whole_trajectory_with_step_decay(burgers, tmp_path):
    from upt.data.dataset import FieldDataset
    from upt.models.checkpoint import load_checkpoint
    from upt.training.run import run_stage

    history = 2
    settings = {"seed": 0, "model": {"family": "fno", "variant": "pdebench", "modes": 4, "hidden": 8},
                "history": history, "params": [],
                "stage": {"epochs": 3, "batch_size": 2, "lr": 1e-3, "schedule": "step", "lr_step_epochs": 1,
                          "lr_gamma": 0.5, "horizon": None, "losses": {"next_step": 0.0, "rollout": 1.0}}}
    run_stage("fno", settings, *burgers, tmp_path / "model.pt")
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert checkpoint.model_spec["variant"] == "pdebench"
    train = FieldDataset(*burgers, "train", history=history, horizon=None)
    assert train.horizon == train.n_times - history and len(train) == train.n_samples  # one window each
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    epochs = metrics[metrics["epoch"].between(1, 3)]
    # the lr after each epoch: x0.5 per epoch (steps_per_epoch = train trajectories // batch)
    assert list(epochs["lr"]) == pytest.approx([1e-3 * 0.5, 1e-3 * 0.25, 1e-3 * 0.125])


def test_gpu_script_smoke_mode_runs_on_the_cpu(tmp_path):
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_parity_and_scaling.py"), "--smoke",
                    "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")], check=True, cwd=tmp_path,
                   timeout=300)
    parity = pd.read_csv(tmp_path / "out" / "fno_parity.csv").iloc[0]
    assert parity["parameters"] == 23937 and parity["frames"] == 41 and parity["predicted_frames"] == 31
    assert math.isfinite(parity["nrmse_pdebench"])
    # PDEBench's way averages the 10 given frames (error 0) in: 31/41 of the predicted frames' mean
    assert parity["nrmse_pdebench"] == pytest.approx(parity["nrmse_predicted_frames"] * 31 / 41, rel=1e-5)
    sweep = pd.read_csv(tmp_path / "out" / "token_sweep.csv")
    assert list(sweep["tokens"]) == [16, 32] and sweep["nrmse_pdebench"].notna().all()


def test_an_fno_matched_to_the_approximator_alone_is_narrower():
    """match_part: approximator sizes the FNO to the parameters the UPT spends on dynamics."""
    from upt.training.stages import FNOStage

    dims = {"dim_space": 1, "fields": 1, "history": 1, "cond_dim": 1}
    upt = {"preset": "upt-cpu-s"}
    built = model_from_spec({**upt, **dims, "grid_shape": [128]})
    target = sum(p.numel() for p in built.approximator.parameters())
    spec = FNOStage.model_spec({"family": "fno", "modes": 16, "match": upt, "match_part": "approximator"}, dims, (128,))
    whole = FNOStage.model_spec({"family": "fno", "modes": 16, "match": upt}, dims, (128,))

    def count(hidden):
        return sum(p.numel() for p in model_from_spec({**spec, "hidden": hidden}).parameters())
    assert spec["hidden"] < whole["hidden"]
    assert abs(count(spec["hidden"]) - target) <= min(abs(count(spec["hidden"] + d) - target) for d in (-1, 1))
