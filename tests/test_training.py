"""Training: every stage through the one loop, resume, SIGTERM, NaN, cache hash, DDP, frozen parts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from upt.errors import UptError
from upt.training.cache import build_cache
from upt.models.checkpoint import load_checkpoint
from upt.training.loop import LoopSettings, fit
from upt.training.run import run_stage

BIN = Path(sys.executable).parent


def settings(losses, epochs=2, **stage):
    return {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
            "stage": {"epochs": epochs, "batch_size": 8, "lr": 2e-3, "losses": losses, **stage}}


@pytest.fixture(scope="module")
def autoencoder(burgers, tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "model.pt"
    run_stage("autoencoder", settings({"reconstruction": 1.0}, queries=16), *burgers, out)
    return out


def weights(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_autoencoder_learns_and_selects_on_validation(autoencoder):
    metrics = pd.read_csv(autoencoder.parent / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics["val_loss"].notna().all()
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    result = load_checkpoint(autoencoder)
    assert result.stage == "autoencoder" and result.model_spec["grid_shape"] == [32]


def test_frozen_encoder_arm_keeps_encoder_joint_arm_trains_it(burgers, autoencoder, tmp_path):
    ae = load_checkpoint(autoencoder).model
    build_cache(autoencoder, *burgers, tmp_path / "cache.pt")
    run_stage("operator", settings({"next_step": 1.0, "rollout": 1.0}, horizon=2), *burgers,
              tmp_path / "op" / "model.pt", init=autoencoder, cache=tmp_path / "cache.pt")
    run_stage("joint", settings({"next_step": 1.0, "inverse_encoding": 0.5, "inverse_decoding": 0.5}),
              *burgers, tmp_path / "joint" / "model.pt", init=autoencoder)
    op = load_checkpoint(tmp_path / "op" / "model.pt").model
    joint = load_checkpoint(tmp_path / "joint" / "model.pt").model
    for part in ("encoder", "decoder"):
        assert same(weights(getattr(op, part)), weights(getattr(ae, part)))
        assert not same(weights(getattr(joint, part)), weights(getattr(ae, part)))
    assert not same(weights(op.approximator), weights(ae.approximator))
    # joint fine-tuning of the frozen-encoder UPT starts from all of it, its approximator included:
    # with a vanishing learning rate it ends where it started
    run_stage("joint", settings({"next_step": 1.0}, epochs=1, lr=1e-30), *burgers, tmp_path / "ft" / "model.pt",
              init=tmp_path / "op" / "model.pt")
    tuned = load_checkpoint(tmp_path / "ft" / "model.pt").model
    for part in ("encoder", "approximator", "decoder"):
        torch.testing.assert_close(weights(getattr(tuned, part)), weights(getattr(op, part)))


def test_cache_built_by_another_encoder_is_refused(burgers, autoencoder, tmp_path):
    other = tmp_path / "other" / "model.pt"
    run_stage("autoencoder", {**settings({"reconstruction": 1.0}, epochs=1), "seed": 1}, *burgers, other)
    build_cache(other, *burgers, tmp_path / "cache.pt")
    with pytest.raises(UptError, match="latent cache was built by encoder"):
        run_stage("operator", settings({"next_step": 1.0}), *burgers, tmp_path / "op" / "model.pt",
                  init=autoencoder, cache=tmp_path / "cache.pt")
    assert not (tmp_path / "op").exists()


@pytest.mark.parametrize("student, term, steps, prediction", [("distill", "distillation", 1, "v"),
                                                              ("consistency", "consistency", 2, "consistency")])
def test_diffusion_and_distillation_stages(burgers, autoencoder, tmp_path, student, term, steps, prediction):
    build_cache(autoencoder, *burgers, tmp_path / "cache.pt")
    common = dict(init=autoencoder, cache=tmp_path / "cache.pt")
    run_stage("operator", settings({"next_step": 1.0}, epochs=1), *burgers, tmp_path / "op" / "model.pt", **common)
    common["init"] = tmp_path / "op" / "model.pt"
    run_stage("diffusion", settings({"denoising": 1.0}, corrector={"sample_steps": 4}), *burgers,
              tmp_path / "diff" / "model.pt", **common)
    common["init"] = tmp_path / "diff" / "model.pt"
    run_stage(student, settings({term: 1.0}, epochs=1, student_steps=steps), *burgers,
              tmp_path / "dist" / "model.pt", **common)
    op = load_checkpoint(tmp_path / "op" / "model.pt").model
    result = load_checkpoint(tmp_path / "dist" / "model.pt")
    model, corrector = result.model, result.corrector
    assert corrector is not None and corrector.nfe == corrector.sample_steps == steps
    assert result.stage == student and corrector.prediction == prediction
    assert same(weights(model), weights(op))  # the surrogate stays frozen in both stages
    assert result.corrector_spec["data_scale"] > 0
    # the evaluation records the student's network evaluations per rollout step
    from upt.evaluation.evaluate import evaluate_model

    evaluate_model(tmp_path / "dist" / "model.pt", *burgers, tmp_path / "eval", dataset="b", arm=student, seed=0,
                   horizons=(1,))
    summary = pd.read_csv(tmp_path / "eval" / "summary.csv").set_index("metric")["value"]
    assert summary["nfe"] == steps


# --- the loop itself on a toy stage -------------------------------------------------------------

class ToyData(torch.utils.data.Dataset):
    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.randn(4, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class ToyStage(nn.Module):
    name = "toy"

    def __init__(self, fail_at=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        self.fail_at, self.calls = fail_at, 0

    def forward(self, batch, generator):
        self.calls += 1
        loss = ((self.net(batch["x"]) - batch["y"]) ** 2).mean()
        if self.fail_at is not None and self.calls == self.fail_at:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach()}


def toy_run(out, fail_at=None, **kw):
    torch.manual_seed(0)
    stage = ToyStage(fail_at)
    loop = LoopSettings(epochs=3, batch_size=8, checkpoint_every=3, ema=0.9, **kw)
    return fit(stage, ToyData(), ToyData(16), loop, out)


class Crash(Exception):
    pass


def test_resume_after_a_crash_equals_uninterrupted_run(tmp_path, monkeypatch):
    reference = toy_run(tmp_path / "a")
    original = ToyStage.forward

    def crash_after_8_steps(self, batch, generator):  # 5 steps per epoch: mid-way through epoch 2
        if self.calls == 8:
            raise Crash()
        return original(self, batch, generator)

    monkeypatch.setattr(ToyStage, "forward", crash_after_8_steps)
    with pytest.raises(Crash):
        toy_run(tmp_path / "b")
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["progress"]["step"] == 6
    monkeypatch.setattr(ToyStage, "forward", original)
    resumed = toy_run(tmp_path / "b")
    assert same(weights(resumed), weights(reference))
    assert pd.read_csv(tmp_path / "a" / "metrics.csv").equals(
        pd.read_csv(tmp_path / "b" / "metrics.csv").assign(seconds=pd.read_csv(tmp_path / "a" / "metrics.csv")["seconds"]))


def test_nan_loss_stops_with_step_and_terms(tmp_path):
    with pytest.raises(UptError, match=r"non-finite loss .* at step 6; loss terms: mse=nan"):
        toy_run(tmp_path, fail_at=7)


def test_best_checkpoint_is_chosen_on_validation(tmp_path, monkeypatch):
    import upt.training.loop as loop_module

    scores = iter([3.0, 1.0, 2.0])  # epoch 2 is best on validation though training keeps improving
    snapshots = []
    real_validate = loop_module.validate

    def scripted(model, *args):
        real_validate(model, *args)
        snapshots.append(weights(model))
        return next(scores)

    monkeypatch.setattr(loop_module, "validate", scripted)
    best = toy_run(tmp_path)
    assert same(weights(best), snapshots[1]) and not same(weights(best), snapshots[2])


# --- through the command line: SIGTERM and DDP ---------------------------------------------------

def upt_train(data, out, stage_settings, *launcher, **popen):
    cmd = [*launcher, "-m", "upt", "train", "autoencoder", "--data", str(data[0]), "--stats", str(data[1]),
           "--settings", json.dumps(stage_settings), "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.slow  # three `upt train` subprocesses, ~10 s
def test_sigterm_saves_state_and_resume_matches(burgers, tmp_path):
    cfg = settings({"reconstruction": 1.0}, epochs=30, checkpoint_every=1000, queries=16)
    assert upt_train(burgers, tmp_path / "ref" / "model.pt", cfg, sys.executable).wait(300) == 0
    proc = upt_train(burgers, tmp_path / "run" / "model.pt", cfg, sys.executable)
    while not (tmp_path / "run" / "metrics.csv").exists():  # at least one epoch done
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "preempted" in err and not (tmp_path / "run" / "model.pt").exists()
    step = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["progress"]["step"]
    assert 0 < step < 30 * 4
    assert upt_train(burgers, tmp_path / "run" / "model.pt", cfg, sys.executable).wait(300) == 0
    assert same(load_checkpoint(tmp_path / "run" / "model.pt").model.state_dict(),
                load_checkpoint(tmp_path / "ref" / "model.pt").model.state_dict())


@pytest.mark.slow  # `upt train` alone, then as two torchrun (DDP) processes, ~9 s
def test_ddp_two_processes_match_one(burgers, tmp_path):
    cfg = settings({"reconstruction": 1.0}, epochs=3, queries=16)
    single = upt_train(burgers, tmp_path / "one" / "model.pt", cfg, sys.executable)
    assert single.wait(300) == 0, single.communicate()
    ddp = upt_train(burgers, tmp_path / "two" / "model.pt", cfg, sys.executable, "-m", "torch.distributed.run",
                    "--standalone", "--nproc_per_node", "2")
    assert ddp.wait(300) == 0, ddp.communicate()
    one = pd.read_csv(tmp_path / "one" / "metrics.csv")
    two = pd.read_csv(tmp_path / "two" / "metrics.csv")
    pd.testing.assert_series_equal(one["train_loss"], two["train_loss"], rtol=1e-4)
    pd.testing.assert_series_equal(one["val_loss"], two["val_loss"], rtol=1e-4)


def test_divergence_scales_are_field_std_over_grid_spacing(dataset):
    """The joint stage's divergence term works in physical units: d(std * v)/dx = std/dx * dv/dx."""
    import json

    from upt.data.dataset import FieldDataset
    from upt.training.stages import divergence_scales as _divergence_scales

    nc, stats_json = dataset("cfd")
    train = FieldDataset(nc, stats_json, "train")
    stats = json.loads(stats_json.read_text())["fields"]
    ix, iy, (sx, sy) = _divergence_scales(train)
    assert (train.fields[ix], train.fields[iy]) == ("Vx", "Vy")
    assert sx == pytest.approx(stats["Vx"]["std"] / (1 / 7), rel=1e-5)  # 8 points on [0, 1]
    assert sy == pytest.approx(stats["Vy"]["std"] / (1 / 5), rel=1e-5)


def test_adamw_is_fused_for_real_weights_and_steps_complex_ones_too():
    from upt.training.loop import adamw

    real = [nn.Parameter(torch.randn(4, 3))]
    assert adamw(real, lr=0.1).defaults["fused"] is True
    spectral = [nn.Parameter(torch.randn(4, 3, dtype=torch.cfloat)), nn.Parameter(torch.randn(3))]
    optimizer = adamw(spectral, lr=0.1)  # the FNO's spectral weights are complex: no fused kernel
    assert not optimizer.defaults["fused"]
    before = spectral[0].detach().clone()
    spectral[0].abs().sum().backward()
    optimizer.step()
    assert not torch.equal(spectral[0].detach(), before)


def test_a_split_read_from_the_file_trains_exactly_as_a_preloaded_one(burgers, tmp_path, monkeypatch):
    """training.preload_mb 0 reads every window from the file: the same numbers, only slower."""
    from upt.data.dataset import FieldDataset

    reads, original = [], FieldDataset._read
    monkeypatch.setattr(FieldDataset, "_read", lambda self, *a: reads.append(1) or original(self, *a))
    counts = {}
    for name, extra in (("preloaded", {}), ("from-file", {"preload_mb": 0})):
        reads.clear()
        run_stage("autoencoder", settings({"reconstruction": 1.0}, queries=16, **extra), *burgers,
                  tmp_path / name / "model.pt")
        counts[name] = len(reads)
    assert counts["preloaded"] <= 2 < 20 < counts["from-file"]  # one block per split, or one per window
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "preloaded" / "metrics.csv").drop(columns="seconds"),
                                  pd.read_csv(tmp_path / "from-file" / "metrics.csv").drop(columns="seconds"))


@pytest.mark.parametrize("edit, key", [
    (lambda s: s["stage"].update(epochz=1), "stage.epochz"),
    (lambda s: s.update(modle={}), "modle"),
])
def test_a_typo_in_the_settings_fails_naming_the_key(burgers, tmp_path, edit, key):
    cfg = settings({"reconstruction": 1.0}, epochs=1)
    edit(cfg)
    proc = upt_train(burgers, tmp_path / "m.pt", cfg, sys.executable)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and key in err
    assert not (tmp_path / "m.pt").exists()
