"""Consistency distillation of the diffusion corrector: the student's one-step sample against its
teacher's multi-step sample, the boundary condition, the EMA target, the gated loss term, bad
input, network evaluations per step, and an exact resume of the stage through the training loop."""

import copy
import json

import pytest
import torch
import yaml
from torch import nn

from test_diffusion import DIM, ToyNet, toy
from test_models import tiny, wake_zero_inits
from upt.cli import main
from upt.arms import plan
from upt.errors import UptError
from upt.models.denoiser import LatentDenoiser
from upt.models.diffusion import (DiffusionCorrector, consistency_loss, ema_update, make_consistency_student,
                                  make_student)
from upt.models.checkpoint import save_checkpoint
from upt.models.factory import corrector_from_spec, model_from_spec
from upt.training.loop import LoopSettings, fit
from upt.training.run import run_stage
from upt.models.approximators import PureTransformer
from upt.training import stages
from upt.training.stages import ConsistencyStage, DiffusionStage, DistillStage, OperatorStage

SEED = 0
M, S = 1.5, 0.3  # Gaussian toy: x0 | cond ~ N(cond / 2 + M, S^2 I)


def gaussian(n, g):
    """Conditional Gaussian data (x0 [n, 1, 2], cond [n, 1, 2]), whose probability-flow map is linear."""
    cond = torch.rand(n, 1, DIM, generator=g) * 2 - 1
    return 0.5 * cond + M + S * torch.randn(n, 1, DIM, generator=g), cond


def flow_map(noise, cond, schedule):
    """The exact ODE map x_1 -> x_0 of ``gaussian``: m + S (x_1 - alpha_1 m) / sqrt(alpha_1^2 S^2 + sigma_1^2)."""
    alpha, sigma = schedule.alpha_sigma(torch.ones(noise.shape[0]), noise)
    m = 0.5 * cond + M
    return m + S * (noise - alpha * m) / torch.sqrt(alpha**2 * S**2 + sigma**2)


def train(model, steps, loss_fn, lr, data, after_step=None):
    """Adam with cosine decay on fresh batches of 256 from ``data``; ``after_step`` as in the loop."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(SEED + 1)
    for _ in range(steps):
        loss = loss_fn(*data(256, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step()
    return model


def trained_teacher(data):
    """A v-prediction ToyNet teacher of ``data``, sampled in 16 DDIM steps."""
    torch.manual_seed(SEED)
    teacher = DiffusionCorrector(ToyNet(), prediction="v", sample_steps=16)
    train(teacher, 600, teacher.loss, 3e-3, data)
    return teacher.requires_grad_(False)


def distill(teacher, data, steps=500, decay=0.95):
    """Consistency distillation as the stage runs it: student, EMA target moved after every step."""
    student = make_consistency_student(teacher, 1)
    target = copy.deepcopy(student).requires_grad_(False)
    train(student, steps, lambda x0, cond: consistency_loss(student, target, teacher, x0, cond), 2e-3, data,
          after_step=lambda: ema_update(target, student, decay))
    return student


def rms(a, b):
    return float(((a - b) ** 2).sum(-1).mean().sqrt())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(SEED)


# ---------------------------------------------------------------- the one-step student


# RMS distance of the one-step sample to the teacher's 16-step sample, before -> after, measured over
# seeds 0-3: gaussian 0.42-0.44 -> 0.047-0.053 (teacher to the exact map 0.052-0.058, student 0.020-0.030;
# with 4000 steps the student goes on to 0.008 from the teacher, its fixed point, and 0.053 from the
# exact map), two clusters 1.02-1.05 -> 0.082-0.089. One-step variance / teacher's: 1.01-1.18.
@pytest.mark.parametrize("data, tol", [(gaussian, 0.15), (toy, 0.3)], ids=["gaussian", "two-clusters"])
def test_one_step_student_matches_the_teachers_multi_step_sample(data, tol):
    teacher = trained_teacher(data)
    g = torch.Generator().manual_seed(123)
    _, cond = data(2000, g)
    noise = torch.randn(cond.shape, generator=g)
    reference = teacher.sample(cond, noise=noise)  # 16 DDIM steps
    before = rms(make_consistency_student(teacher, 1).sample(cond, noise=noise), reference)
    student = distill(teacher, data)
    one_step = student.sample(cond, noise=noise)
    after = rms(one_step, reference)
    assert after < tol and after < before / 4, (before, after)
    assert (one_step.var(0) > 0.8 * reference.var(0)).all()  # spread out, not collapsed on the mean
    if data is gaussian:  # and both close to the exact flow map
        exact = flow_map(noise, cond, teacher.schedule)
        assert rms(reference, exact) < 0.1 and rms(one_step, exact) < tol
        # two steps re-noise with fresh noise: the samples no longer follow the noise, the law does
        cond = torch.tensor([0.4, -0.6]).expand(4000, 1, DIM)
        two = student.sample(cond, steps=2, generator=torch.Generator().manual_seed(7))[:, 0]
        torch.testing.assert_close(two.mean(0), 0.5 * cond[0, 0] + M, atol=0.05, rtol=0)
        torch.testing.assert_close(two.std(0), torch.full((DIM,), S), atol=0.05, rtol=0)


def random_teacher():
    """A v-prediction corrector around a LatentDenoiser with every weight random (its output layer is
    zero-initialised, which would make the boundary condition trivially true)."""
    net = LatentDenoiser(dim=16, depth=1, heads=2)
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return DiffusionCorrector(net, data_scale=0.3, sample_steps=8)


def test_boundary_condition_holds_exactly_for_any_weights():
    teacher = random_teacher()
    student = make_consistency_student(teacher, 1)
    z, cond = torch.randn(4, 8, 16), torch.randn(4, 8, 16)
    with torch.no_grad():
        assert torch.equal(student.consistency_fn(z, torch.zeros(4), cond), z)
        assert not torch.allclose(student.consistency_fn(z, torch.full((4,), 0.5), cond), z, atol=0.1)
    c_skip, c_out = student.scalings(torch.zeros(1), z)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0
    # at initialization the student is its v-teacher's x0 estimate
    t = torch.rand(4)
    torch.testing.assert_close(student.consistency_fn(z, t, cond),
                               teacher.to_x0_eps(teacher.net(z, t, cond), z, t)[0])


# ---------------------------------------------------------------- EMA target, gated term


def test_ema_target_gets_no_gradient_and_follows_the_ema_rule():
    teacher = random_teacher()
    student = make_consistency_student(teacher, 1)
    target = copy.deepcopy(student).requires_grad_(False)
    x0, cond = torch.randn(4, 8, 16), torch.randn(4, 8, 16)
    consistency_loss(student, target, teacher, x0, cond).backward()
    assert all(p.grad is None for p in [*target.parameters(), *teacher.parameters()])
    assert sum(float(p.grad.abs().sum()) for p in student.parameters()) > 0
    with torch.no_grad():
        for p in student.parameters():  # as if the optimizer had stepped
            p.add_(torch.randn_like(p))
    old = [p.clone() for p in target.parameters()]
    ema_update(target, student, 0.9)
    for p_new, p_old, p in zip(target.parameters(), old, student.parameters()):
        torch.testing.assert_close(p_new, 0.9 * p_old + 0.1 * p)


class Approximator(nn.Module):
    """Stands in for the UPT in a latent stage: ``step(z, cond)`` is all the stage asks of it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 16)

    def step(self, z, cond):
        return self.lin(z)


class Windows(torch.utils.data.Dataset):
    """LatentWindows-shaped batches: z [8, 16], target [1, 8, 16], cond [1, 1]."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.z, self.next = torch.randn(n, 8, 16, generator=g), torch.randn(n, 1, 8, 16, generator=g)

    def __len__(self):
        return len(self.z)

    def __getitem__(self, i):
        return {"z": self.z[i], "target": self.next[i], "cond": torch.zeros(1, 1)}


def consistency_stage(weight=1.0):
    torch.manual_seed(SEED)
    teacher = random_teacher()
    student = make_consistency_student(teacher, 1)
    return ConsistencyStage(Approximator(), {"consistency": weight}, student, teacher, target_ema=0.9)


def test_stage_moves_its_frozen_target_after_each_step():
    stage = consistency_stage()
    assert not any(p.requires_grad for p in [*stage.target.parameters(), *stage.teacher.parameters(),
                                             *stage.model.parameters()])
    batch = torch.utils.data.default_collate([Windows(4, 0)[i] for i in range(4)])
    loss, terms = stage(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"consistency"}
    loss.backward()
    with torch.no_grad():
        for p in stage.corrector.parameters():
            p.sub_(0.1 * p.grad)
    old = [p.clone() for p in stage.target.parameters()]
    stage.after_step()
    for p_new, p_old, p in zip(stage.target.parameters(), old, stage.corrector.parameters()):
        torch.testing.assert_close(p_new, 0.9 * p_old + 0.1 * p)


def test_zero_weight_never_evaluates_the_term():
    stage = consistency_stage(weight=0.0)
    calls = []
    for module in (stage.corrector.net, stage.target.net, stage.teacher.net):
        module.register_forward_hook(lambda *_: calls.append(1))
    batch = torch.utils.data.default_collate([Windows(4, 0)[i] for i in range(4)])
    with pytest.raises(ValueError, match="every loss weight is zero"):  # its only term: nothing to train
        stage(batch, torch.Generator().manual_seed(0))
    assert calls == []


class DropPathApproximator(nn.Module):
    """A frozen approximator with drop_path 0.5: random steps in train mode, deterministic in eval."""

    def __init__(self):
        super().__init__()
        self.approximator = wake_zero_inits(PureTransformer(dim=16, hidden=16, depth=2, heads=2, cond_dim=1,
                                                            drop_path=0.5))

    def step(self, z, cond):
        return self.approximator(z, cond)


def latent_stage(name):
    torch.manual_seed(SEED)
    model, teacher = DropPathApproximator(), random_teacher()
    if name == "diffusion":
        return DiffusionStage(model, {"denoising": 1.0}, teacher)
    if name == "distill":
        return DistillStage(model, {"distillation": 1.0}, make_student(teacher, 1), teacher)
    return ConsistencyStage(model, {"consistency": 1.0}, make_consistency_student(teacher, 1), teacher)


@pytest.mark.parametrize("name", ["diffusion", "distill", "consistency"])
def test_frozen_modules_stay_in_eval_mode_while_the_stage_trains(name, tmp_path):
    """The loop calls stage.train() each epoch (and eval()/train() around validation): the frozen
    approximator and teacher must still take deterministic steps, only the trained corrector trains."""
    stage = latent_stage(name)
    batch = torch.utils.data.default_collate([Windows(4, 0)[i] for i in range(4)])
    z, cond = batch["z"], batch["cond"][:, 0]
    for _ in range(2):  # the validation pattern: eval, then back to train
        stage.eval()
        stage.train()
        assert stage.training and stage.corrector.training
        frozen = [stage.model, *[getattr(stage, m) for m in ("teacher", "target") if hasattr(stage, m)]]
        assert not any(module.training for f in frozen for module in f.modules())
        torch.testing.assert_close(stage.model.step(z, cond), stage.model.step(z, cond), rtol=0, atol=0)
    assert not copy.deepcopy(stage).train().model.approximator.training  # the loop's best/EMA copies
    # through the loop itself: every call of the frozen approximator is in eval mode
    modes = []
    stage.model.approximator.register_forward_hook(lambda module, *_: modes.append(module.training))
    fit(stage, Windows(8, 0), Windows(4, 1), LoopSettings(epochs=2, batch_size=4, lr=1e-3), tmp_path)
    assert modes and not any(modes)


def test_operator_stage_trains_the_approximator_with_its_encoder_and_decoder_in_eval_mode():
    stage = OperatorStage(tiny(2, drop_path=0.5), {"next_step": 1.0}).eval().train()
    assert stage.model.approximator.training and all(m.training for m in stage.model.approximator.modules())
    assert not any(m.training for part in (stage.model.encoder, stage.model.decoder) for m in part.modules())


def test_residual_scale_takes_the_approximators_deterministic_step():
    model = DropPathApproximator().train()
    windows = Windows(16, 0)
    scale = stages.residual_scale(model, windows)
    assert model.training  # its mode is given back
    batch = torch.utils.data.default_collate([windows[i] for i in range(16)])
    with torch.no_grad():
        expected = (batch["target"][:, 0] - model.eval().step(batch["z"], batch["cond"][:, 0])).std()
    assert scale == pytest.approx(float(expected), rel=1e-6)


class Crash(Exception):
    pass


def test_resume_of_the_stage_is_exact_target_included(tmp_path, monkeypatch):
    """The EMA target lives in the stage's state: a run stopped mid-way resumes bit for bit."""
    def run(out):
        stage = consistency_stage()
        loop = LoopSettings(epochs=3, batch_size=4, checkpoint_every=3, lr=3e-3)
        best = fit(stage, Windows(20, 0), Windows(8, 1), loop, out)
        return best, torch.load(out / "state.pt", weights_only=True)["stage"]

    best, final = run(tmp_path / "a")
    # the loop moved the target (it starts as the teacher) without making it the student
    key = "net.out.linear.weight"
    assert not torch.equal(final[f"target.{key}"], final[f"teacher.{key}"])
    assert not torch.equal(final[f"target.{key}"], final[f"corrector.{key}"])

    original, calls = ConsistencyStage.forward, []

    def crash(self, batch, generator):  # calls 1-5 train epoch 1, 6-7 validate it, 8-9 are steps 6-7
        calls.append(1)
        if len(calls) == 10:
            raise Crash()
        return original(self, batch, generator)

    monkeypatch.setattr(ConsistencyStage, "forward", crash)
    with pytest.raises(Crash):
        run(tmp_path / "b")
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["progress"]["step"] == 6
    monkeypatch.setattr(ConsistencyStage, "forward", original)
    resumed_best, resumed = run(tmp_path / "b")
    assert resumed.keys() == final.keys() and all(torch.equal(resumed[k], final[k]) for k in final)
    assert all(torch.equal(a, b) for a, b in zip(resumed_best.state_dict().values(), best.state_dict().values()))


# ---------------------------------------------------------------- nfe, bad input


def count_calls(model, cond, **kw):
    calls = []
    handle = model.net.register_forward_hook(lambda *_: calls.append(1))
    model.sample(cond, **kw)
    handle.remove()
    return len(calls)


def test_nfe_is_the_network_evaluations_per_sample():
    teacher = DiffusionCorrector(ToyNet(), sample_steps=16)
    cond = torch.zeros(3, 1, DIM)
    for model in (teacher, make_student(teacher, 2), make_consistency_student(teacher, 1),
                  make_consistency_student(teacher, 3)):
        assert count_calls(model, cond) == model.nfe == model.sample_steps
    assert teacher.nfe == 16


@pytest.mark.parametrize("make", [make_student, make_consistency_student])
@pytest.mark.parametrize("steps, message", [(17, "more steps than its 16-step teacher"), (0, ">= 1"),
                                            (-1, ">= 1"), (1.5, ">= 1")])
def test_students_take_between_one_step_and_the_teachers_steps(make, steps, message):
    with pytest.raises(ValueError, match=message):
        make(DiffusionCorrector(ToyNet(), sample_steps=16), steps)


def test_bad_sampler_settings_are_refused():
    with pytest.raises(ValueError, match="steps >= 1"):
        DiffusionCorrector(ToyNet(), sample_steps=0)
    with pytest.raises(ValueError, match="v-prediction teacher"):
        make_consistency_student(DiffusionCorrector(ToyNet(), prediction="eps"), 1)


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory):
    """A diffusion-stage checkpoint with a 4-step teacher (untrained: only the checks read it)."""
    path = tmp_path_factory.mktemp("diffusion") / "model.pt"
    spec = {"preset": "upt-tiny", "dim_space": 1, "fields": 1, "history": 1, "cond_dim": 1, "grid_shape": [32]}
    corrector_spec = {"dim": 16, "depth": 1, "heads": 2, "prediction": "v", "sample_steps": 4, "data_scale": 1.0}
    save_checkpoint(path, stage="diffusion", model_spec=spec, model=model_from_spec(spec),
                    corrector_spec=corrector_spec, corrector=corrector_from_spec(corrector_spec))
    return path


@pytest.mark.parametrize("stage", ["distill", "consistency"])
@pytest.mark.parametrize("steps, message", [(5, "student_steps of stage .* = 5 is more than the teacher's 4"),
                                            (0, "stage.student_steps must be a whole number >= 1"),
                                            (-2, "stage.student_steps must be a whole number >= 1")])
def test_upt_train_refuses_bad_student_steps(diffusion_checkpoint, tmp_path, capsys, stage, steps, message):
    settings = {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                "stage": {"epochs": 1, "losses": {}, "student_steps": steps}}
    with pytest.raises(UptError, match=message):
        run_stage(stage, settings, "data.nc", "stats.json", tmp_path / "out.pt", init=diffusion_checkpoint,
                  cache=tmp_path / "cache.pt")
    args = ["train", stage, "--data", "data.nc", "--stats", "stats.json", "--settings", json.dumps(settings),
            "--out", str(tmp_path / "out.pt"), "--init", str(diffusion_checkpoint), "--cache", "cache.pt"]
    assert main(args) == 1
    assert "student_steps" in capsys.readouterr().err


def test_upt_train_refuses_a_bad_target_decay(diffusion_checkpoint, tmp_path):
    settings = {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                "stage": {"epochs": 1, "losses": {"consistency": 1.0}, "target_ema": 1.0}}
    with pytest.raises(UptError, match=r"target_ema .* \[0, 1\)"):
        run_stage("consistency", settings, "data.nc", "stats.json", tmp_path / "out.pt",
                  init=diffusion_checkpoint, cache=tmp_path / "cache.pt")


def arm_config(student_steps, teacher_steps=None):
    diffusion = {"epochs": 1, "losses": {"denoising": 1.0}}
    if teacher_steps is not None:
        diffusion["corrector"] = {"sample_steps": teacher_steps}
    return {
        "datasets": {"d": {}},
        "base": {"model": {"preset": "upt-tiny"}, "history": 1, "params": [], "pipeline": ["autoencoder"],
                 "training": {"lr": 1e-3},
                 "stages": {"autoencoder": {"epochs": 1, "losses": {"reconstruction": 1.0}},
                            "operator": {"epochs": 1, "losses": {"next_step": 1.0}},
                            "diffusion": diffusion,
                            "consistency": {"epochs": 1, "losses": {"consistency": 1.0},
                                            "student_steps": student_steps}}},
        "arms": {"cm": {"pipeline": ["autoencoder", "operator", "diffusion", "consistency"]}},
    }


def test_the_plan_refuses_bad_student_steps():
    assert [r.stage for r in plan(arm_config(2, 4), "d")["cm"]][-1] == "consistency"
    assert plan(arm_config(16), "d")  # the teacher's default: 16 steps
    with pytest.raises(ValueError, match=r"stages.consistency.student_steps = 5 is more than the teacher's 4"):
        plan(arm_config(5, 4), "d")
    with pytest.raises(ValueError, match=r"arms.cm \(stage consistency\): stage.student_steps must be a whole "
                                         r"number >= 1"):
        plan(arm_config(0), "d")
    with pytest.raises(ValueError, match="more than the teacher's 16"):
        plan(arm_config(17), "d")


def test_the_schema_takes_a_consistency_arm():
    from pathlib import Path

    from snakemake.utils import validate

    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["base"]["stages"]["consistency"] = {"epochs": 1, "losses": {"consistency": 1.0}, "student_steps": 1,
                                            "target_ema": 0.95}
    cfg["arms"]["consistency"] = {"pipeline": ["autoencoder", "operator", "diffusion", "consistency"]}
    validate(cfg, str(repo / "workflow" / "schemas" / "config.schema.yaml"))
    every_arm = {**cfg, "datasets": {"d": {}}}  # a dataset of the config may list only some arms
    assert [r.stage for r in plan(every_arm, "d")["consistency"]] == ["autoencoder", "operator", "diffusion",
                                                                     "consistency"]
    cfg["base"]["stages"]["consistency"]["student_steps"] = 0
    with pytest.raises(Exception, match="student_steps|minimum"):
        validate(cfg, str(repo / "workflow" / "schemas" / "config.schema.yaml"))
