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
    loop = LoopSettings(**{"epochs": 3, "batch_size": 8, "checkpoint_every": 3, "ema": 0.9, **kw})
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


# --- early stopping on a validation plateau -------------------------------------------------------

def scripted_validation(monkeypatch, scores):
    """validate() returns ``scores[k]`` at its k-th call (the real one still runs: same RNG use)."""
    import upt.training.loop as loop_module

    real_validate, calls = loop_module.validate, []

    def scripted(model, *args):
        real_validate(model, *args)
        calls.append(1)
        return scores[len(calls) - 1]

    monkeypatch.setattr(loop_module, "validate", scripted)


def test_early_stop_on_a_plateau_at_the_predicted_epoch(tmp_path, monkeypatch):
    # min_delta 0.01: epoch 2 improves on 5.0 (4.0 < 4.95); 3.99, 3.97 and 3.965 are each within 1%
    # of 4.0, the last improving epoch's loss, so epochs 3, 4, 5 are stale and patience 3 stops at 5
    scripted_validation(monkeypatch, [5.0, 4.0, 3.99, 3.97, 3.965, 1.0, 1.0, 1.0])
    toy_run(tmp_path, epochs=8, patience=3, min_delta=0.01)
    metrics = pd.read_csv(tmp_path / "metrics.csv", keep_default_na=False)
    assert list(metrics["epoch"]) == [1, 2, 3, 4, 5] and list(metrics["stale"]) == [0, 0, 1, 2, 3]
    assert list(metrics["stop"]) == ["", "", "", "", "plateau"]
    from upt.training.plateau import plateau_gain

    # last quarter of 5 epochs = ceil(5 / 4) = 2: best 3.965 against the best 3.99 of epochs 1-3
    assert plateau_gain(metrics["val_loss"]) == pytest.approx((3.99 - 3.965) / 3.99)


def test_without_patience_or_plateau_the_run_stops_at_the_cap(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [4.0, 3.0, 2.0, 1.0, 3.0, 3.0])
    toy_run(tmp_path / "improving", epochs=4, patience=1, min_delta=0.01)
    toy_run(tmp_path / "off", epochs=2)  # patience null: 3.0, 3.0 would be a plateau
    improving = pd.read_csv(tmp_path / "improving" / "metrics.csv", keep_default_na=False)
    assert list(improving["stop"]) == ["", "", "", "cap"] and list(improving["stale"]) == [0, 0, 0, 0]
    off = pd.read_csv(tmp_path / "off" / "metrics.csv", keep_default_na=False)
    assert list(off["stop"]) == ["", "cap"] and list(off["stale"]) == [0, 1]
    from upt.training.plateau import plateau_gain

    assert plateau_gain(improving["val_loss"]) == pytest.approx((2.0 - 1.0) / 2.0)  # epoch 4 vs epochs 1-3


def test_plateau_decay_scales_the_lr_once_then_stops_on_the_next_plateau(tmp_path, monkeypatch):
    from upt.training.loop import warmup_cosine

    scripted_validation(monkeypatch, [2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    toy_run(tmp_path, epochs=6, patience=1, min_delta=0.01, plateau_decay=0.1)
    metrics = pd.read_csv(tmp_path / "metrics.csv", keep_default_na=False)
    # epoch 2: first plateau -> lr x 0.1, window restarts; 3 improves; 4 is the second plateau
    assert list(metrics["stop"]) == ["", "", "", "plateau"] and list(metrics["stale"]) == [0, 0, 0, 1]
    schedule = warmup_cosine(6 * 5, LoopSettings().warmup, LoopSettings().min_lr)  # 5 steps per epoch
    scale = [1.0, 0.1, 0.1, 0.1]
    expected = [LoopSettings().lr * schedule(step) * s for step, s in zip(metrics["step"], scale)]
    assert list(metrics["lr"]) == pytest.approx(expected, rel=1e-12)


def test_resume_inside_a_patience_window_equals_uninterrupted_run(tmp_path, monkeypatch):
    plateau = dict(epochs=12, patience=2, min_delta=0.2, plateau_decay=0.5)
    reference = toy_run(tmp_path / "a", **plateau)
    ref_metrics = pd.read_csv(tmp_path / "a" / "metrics.csv", keep_default_na=False)
    assert ref_metrics["stop"].iloc[-1] == "plateau" and len(ref_metrics) < 12
    # crash 2 steps into the epoch after the first stale one (5 steps per epoch)
    stale_epoch = int(ref_metrics.loc[ref_metrics["stale"] == 1, "epoch"].iloc[0])
    original = ToyStage.forward

    def crash(self, batch, generator):
        if self.calls == stale_epoch * 5 + 2:
            raise Crash()
        return original(self, batch, generator)

    monkeypatch.setattr(ToyStage, "forward", crash)
    with pytest.raises(Crash):
        toy_run(tmp_path / "b", **plateau)
    saved = torch.load(tmp_path / "b" / "state.pt", weights_only=True)["progress"]
    assert saved["epoch"] == stale_epoch and saved["plateau"]["stale"] == 1 and saved["stop"] is None
    monkeypatch.setattr(ToyStage, "forward", original)
    resumed = toy_run(tmp_path / "b", **plateau)
    assert same(weights(resumed), weights(reference))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / "metrics.csv", keep_default_na=False).drop(columns="seconds"),
                                  ref_metrics.drop(columns="seconds"))


def test_training_table_records_why_runs_stopped_and_flags_runs_off_their_plateau(tmp_path):
    from upt.evaluation.aggregate import runs_off_plateau, training_table

    runs = {"plateaued": ([4.0, 2.0, 1.9, 1.95], "plateau"),  # gain: best 1.9 vs 1.9 before -> 0
            "slow": ([4.0, 2.0, 1.9, 1.5], "cap"),            # (1.9 - 1.5) / 1.9 > 0.10: flagged
            "flat": ([4.0, 2.0, 1.9, 1.8], "cap")}            # (1.9 - 1.8) / 1.9 < 0.10
    for name, (val, stop) in runs.items():
        (tmp_path / name).mkdir()
        pd.DataFrame({"epoch": [1, 2, 3, 4], "step": [5, 10, 15, 20], "train_loss": 1.0, "val_loss": val,
                      "seconds": 1.0, "stop": ["", "", "", stop]}).to_csv(tmp_path / name / "metrics.csv", index=False)
    manifest = {"dataset": "b", "runs": {name: {"0": [{"stage": "autoencoder", "dir": str(tmp_path / name)}]}
                                         for name in runs}}
    table = training_table(manifest)
    last = table.groupby("arm").last()
    assert dict(last["stop_reason"]) == {"plateaued": "plateau", "slow": "cap", "flat": "cap"}
    assert last.loc["plateaued", "plateau_gain"] == 0.0
    assert last.loc["slow", "plateau_gain"] == pytest.approx(0.4 / 1.9)
    assert last.loc["flat", "plateau_gain"] == pytest.approx(0.1 / 1.9)
    flagged = runs_off_plateau(table)
    assert list(flagged["arm"]) == ["slow"] and flagged["epochs"].iloc[0] == 4
    (tmp_path / "plateaued" / "metrics.csv").write_text("epoch,step,train_loss,val_loss,seconds,stop\n1,5,1,1,1,\n")
    with pytest.raises(UptError, match="last row's stop is empty"):
        training_table(manifest)


@pytest.mark.parametrize("key, value, message", [("patience", 0, "patience must be >= 1"),
                                                 ("min_delta", 1.5, r"min_delta must be in \[0, 1\)"),
                                                 ("plateau_decay", 1.0, r"plateau_decay must be in \(0, 1\)")])
def test_bad_early_stopping_settings_fail_naming_the_key(key, value, message):
    from upt.settings import TrainSettings

    with pytest.raises(UptError, match=f"stage.{message}"):
        TrainSettings.parse(settings({"reconstruction": 1.0}, **{key: value}), "autoencoder")


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
    # min_delta 0.99: epoch 2 is all but surely a plateau; every rank must stop there together
    cfg = settings({"reconstruction": 1.0}, epochs=3, queries=16, patience=1, min_delta=0.99)
    single = upt_train(burgers, tmp_path / "one" / "model.pt", cfg, sys.executable)
    assert single.wait(300) == 0, single.communicate()
    ddp = upt_train(burgers, tmp_path / "two" / "model.pt", cfg, sys.executable, "-m", "torch.distributed.run",
                    "--standalone", "--nproc_per_node", "2")
    assert ddp.wait(300) == 0, ddp.communicate()
    one = pd.read_csv(tmp_path / "one" / "metrics.csv")
    two = pd.read_csv(tmp_path / "two" / "metrics.csv")
    pd.testing.assert_series_equal(one["train_loss"], two["train_loss"], rtol=1e-4)
    pd.testing.assert_series_equal(one["val_loss"], two["val_loss"], rtol=1e-4)
    assert list(one["stop"].fillna("")) == list(two["stop"].fillna("")) == ["", "plateau"]


def test_divergence_scales_are_field_std_over_grid_spacing(dataset):
    """The joint stage's divergence term works in physical units: d(std * v)/dx = std/dx * dv/dx."""
    import json

    from upt.data.dataset import FieldDataset
    from upt.training.stages import divergence_scales as _divergence_scales

    nc, stats_json = dataset("cfd")
    train = FieldDataset(nc, stats_json, "train")
    stats = json.loads(stats_json.read_text())["fields"]
    ix, iy, (sx, sy), periodic = _divergence_scales(train)
    assert (train.fields[ix], train.fields[iy]) == ("Vx", "Vy") and not periodic  # PDEBench: bounded
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


# --- latent noise and the latent anchor -----------------------------------------------------------

class Recorder(nn.Module):
    """Wraps an approximator and keeps every latent it reads and returns."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.inputs, self.outputs = inner, [], []

    def forward(self, z, cond):
        out = self.inner(z, cond)
        self.inputs.append(z.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


def sign_latents(scales, leading=(6, 5, 4)):
    """Latents whose channel c is +-scales[c] in equal numbers: mean 0 and std scales[c] exactly."""
    signs = torch.ones(*leading, len(scales))
    signs.view(-1, len(scales))[1::2] = -1.0
    return signs * torch.tensor(scales)


def operator_stage(noise, horizon=3, batch=256):
    from types import SimpleNamespace

    from upt.models import build_model
    from upt.settings import StageSettings
    from upt.training.stages import OperatorStage

    torch.manual_seed(0)
    model = build_model("upt-tiny", dim_space=1, fields=1, cond_dim=1, grid_shape=(32,))
    model.approximator = Recorder(model.approximator)
    scales = [0.5, 1.0, 2.0, 4.0] * 4  # 16 channels
    stage = OperatorStage.build(model, StageSettings(latent_noise=noise, losses={"next_step": 1.0, "rollout": 1.0}),
                                SimpleNamespace(z=sign_latents(scales)), None)
    z = torch.randn(batch, 4, 16)
    data = {"z": z, "target": z[:, None] + 0.1 * torch.randn(batch, horizon, 4, 16), "cond": torch.rand(batch, horizon, 1)}
    return stage, data, torch.tensor(scales)


def test_latent_noise_is_scaled_per_channel_and_reaches_every_rollout_step_in_training_only():
    stage, batch, scales = operator_stage(0.1)
    torch.testing.assert_close(stage.noise_scale, 0.1 * scales)  # 0.1 of each channel's std, by hand
    recorder = stage.model.approximator
    stage.train()
    stage(batch, torch.Generator().manual_seed(1))
    assert len(recorder.inputs) == 3
    # what each step reads = the previous latent (z_0, then the step's own prediction) + noise
    fed = [batch["z"]] + recorder.outputs[:-1]
    for read, clean in zip(recorder.inputs, fed):
        noise_std = (read - clean).reshape(-1, 16).std(0)
        torch.testing.assert_close(noise_std, 0.1 * scales, rtol=0.08, atol=0)
    recorder.inputs.clear(), recorder.outputs.clear()
    stage.eval()
    stage(batch, torch.Generator().manual_seed(1))
    torch.testing.assert_close(recorder.inputs[0], batch["z"], rtol=0, atol=0)  # never in evaluation
    torch.testing.assert_close(recorder.inputs[1], recorder.outputs[0], rtol=0, atol=0)


def test_zero_latent_noise_trains_as_before_and_noise_keeps_the_gradient():
    quiet, batch, _ = operator_stage(0.0, batch=8)
    assert quiet.noise_scale is None
    noisy, _, _ = operator_stage(0.1, batch=8)
    noisy.load_state_dict(quiet.state_dict(), strict=False)
    for stage in (quiet, noisy):
        stage.train()
        with torch.no_grad():
            for p in stage.model.approximator.parameters():  # wake the zero-initialised output layer
                if not p.any():
                    p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    losses = {}
    for name, stage in (("quiet", quiet), ("noisy", noisy)):
        losses[name] = stage(batch, torch.Generator().manual_seed(3))[0]
        stage.eval()
        losses[name + "-eval"] = stage(batch, torch.Generator().manual_seed(3))[0]
        stage.train()
    # no noise: training mode computes exactly what evaluation does (the loss before this setting)
    assert torch.equal(losses["quiet"], losses["quiet-eval"]) and torch.equal(losses["quiet-eval"], losses["noisy-eval"])
    assert not torch.equal(losses["noisy"], losses["noisy-eval"])
    z = batch["z"].clone().requires_grad_(True)
    loss, _ = noisy({**batch, "z": z}, torch.Generator().manual_seed(3))
    loss.backward()
    grads = [p.grad for p in noisy.model.approximator.parameters() if p.grad is not None]
    assert grads and all(g.isfinite().all() for g in grads) and sum(float(g.norm()) for g in grads) > 0
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_latent_noise_is_refused_where_no_approximator_trains():
    from upt.settings import TrainSettings

    raw = settings({"reconstruction": 1.0}, latent_noise=0.1)
    with pytest.raises(UptError, match="latent_noise"):
        TrainSettings.parse(raw, "autoencoder")
    with pytest.raises(UptError, match="latent_noise"):
        TrainSettings.parse(settings({"next_step": 1.0}, latent_noise=-0.1), "operator")
    assert TrainSettings.parse(settings({"next_step": 1.0}, latent_noise=0.1), "joint").stage.latent_noise == 0.1


def test_latent_anchor_is_zero_at_the_reference_and_quadratic_in_scale_and_shift():
    from upt.training.latent_scale import channel_stats, latent_anchor

    scales = torch.tensor([0.5, 1.0, 2.0, 4.0])
    z = sign_latents(scales.tolist())
    mean, std = channel_stats(z)
    torch.testing.assert_close(mean, torch.zeros(4))
    torch.testing.assert_close(std, scales)
    assert float(latent_anchor(z, mean, std)) == pytest.approx(0.0, abs=1e-10)
    for a in (0.5, 1.5, 3.0):  # every channel scaled by a: ((a - 1) s_c)^2 / s_c^2
        assert float(latent_anchor(a * z, mean, std)) == pytest.approx((a - 1) ** 2, rel=1e-5)
    assert float(latent_anchor(z + 0.3 * scales, mean, std)) == pytest.approx(0.09, rel=1e-5)  # shifted 0.3 s_c


def test_latent_anchor_bounds_a_scale_the_physical_loss_leaves_free():
    """A decoder that layer-normalizes its tokens cannot tell z from a z: a loss read through it is
    flat in a, and any push (here a slope g towards larger a) drifts a without bound; with the
    anchor of weight w, a settles at 1 + g / (2 w)."""
    from upt.training.latent_scale import channel_stats, latent_anchor

    z = sign_latents([0.5, 1.0, 2.0, 4.0])
    reference = channel_stats(z)
    g, w = 0.1, 0.5
    final = {}
    for weight in (0.0, w):
        a = torch.tensor(1.0, requires_grad=True)
        optimizer = torch.optim.SGD([a], lr=0.5)
        for _ in range(400):
            optimizer.zero_grad()
            flat = nn.functional.layer_norm(a * z, (4,)).square().mean()  # scale-free "physics"
            (flat - g * a + weight * latent_anchor(a * z, *reference)).backward()
            optimizer.step()
        final[weight] = float(a.detach())
    assert final[0.0] > 10  # unanchored: 1 + 400 * 0.5 * g = 21
    assert final[w] == pytest.approx(1 + g / (2 * w), rel=1e-3)


def test_joint_stage_measures_its_reference_from_the_initial_encoder(burgers, autoencoder):
    from upt.data.dataset import FieldDataset
    from upt.settings import StageSettings
    from upt.training.latent_scale import channel_stats
    from upt.training.stages import JointStage

    model = load_checkpoint(autoencoder).model
    train = FieldDataset(*burgers, "train", horizon=2)
    stage = JointStage.build(model, StageSettings(latent_noise=0.1, losses={"next_step": 1.0, "latent_anchor": 0.1}),
                             train, None)
    with torch.no_grad():
        every = torch.cat([model.eval().encode(train[i]["u"][None], train.pos[None], train.grid_shape)
                           for i in range(len(train))])
    mean, std = channel_stats(every)
    torch.testing.assert_close(stage.latent_std, std, rtol=0.1, atol=0.05 * float(std.mean()))
    torch.testing.assert_close(stage.noise_scale, 0.1 * stage.latent_std)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    stage.train()
    loss, terms = stage(batch, torch.Generator().manual_seed(0))
    assert loss.isfinite() and float(terms["latent_anchor"]) > 0
    stage.eval()
    _, clean = stage(batch, torch.Generator().manual_seed(0))
    assert float(clean["latent_anchor"]) < 1.0  # the initial encoder sits near its own statistics
    plain = JointStage.build(model, StageSettings(losses={"next_step": 1.0}), train, None)
    assert plain.latent_std is None and plain.noise_scale is None
