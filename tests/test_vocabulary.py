"""One vocabulary: the schema, the CLI and the workflow name the stages, baselines, presets and
generators of upt.vocabulary; typed settings refuse what they do not know, naming the key."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from upt import vocabulary
from upt.cli import build_parser
from upt.errors import UptError
from upt.settings import LoopSettings, StageSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def _enums(node):
    """Every enum of the schema but the model family's (upt or fno: a kind of model, not a stage)."""
    if isinstance(node, dict):
        if "enum" in node:
            yield node["enum"]
        for key, value in node.items():
            if key != "family":
                yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def test_the_schema_spells_no_vocabulary_name():
    """Stage, baseline, preset and generator names live in upt.vocabulary alone: the schema asks
    for strings and upt.config.check_config checks them, so adding one touches one entry."""
    names = (set(vocabulary.STAGES) | set(vocabulary.BASELINES) | set(vocabulary.PRESETS)
             | set(vocabulary.GENERATORS) | set(vocabulary.LOSS_TERMS))
    spelled = {v for enum in _enums(SCHEMA) for v in enum} & names
    assert not spelled
    properties = {key for node in [SCHEMA] for key in _property_names(node)}
    assert not properties & (set(vocabulary.STAGES) | set(vocabulary.LOSS_TERMS))


def _property_names(node):
    if isinstance(node, dict):
        yield from node.get("properties", {}) if isinstance(node.get("properties"), dict) else ()
        for value in node.values():
            yield from _property_names(value)


def _default_config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("change, message", [
    (lambda c: c["arms"]["upt-s"].update(pipeline=["autoencoder", "operater"]),
     r"arms\.upt-s\.pipeline\[1\]: unknown stage 'operater'; known: autoencoder, operator"),
    (lambda c: c["base"]["stages"].update(autoencodr={"epochs": 1}), r"base\.stages\.autoencodr: unknown stage"),
    (lambda c: c["base"]["model"].update(preset="upt-huge"), r"base\.model\.preset: unknown model preset 'upt-huge'"),
    (lambda c: c["datasets"]["burgers1d"]["evaluation"].update(baselines=["persistance"]),
     r"datasets\.burgers1d\.evaluation\.baselines\[0\]: unknown baseline 'persistance'"),
    (lambda c: c["datasets"]["burgers1d"]["source"]["generate"].update(pde="burgers3d"),
     r"datasets\.burgers1d\.source\.generate\.pde: unknown generator"),
    (lambda c: c["base"]["stages"]["operator"].update(epochz=3), r"arms\.upt-s \(stage operator\): stage\.epochz: "
                                                                  r"unknown key"),
    (lambda c: c["base"]["stages"]["operator"]["losses"].update(reconstruction=1.0),
     r"stage\.losses\.reconstruction: stage operator has no loss term"),
    (lambda c: c["arms"].update(persistence={}), r"arms\.persistence: the name is a baseline's"),
])
def test_unknown_names_in_the_config_fail_at_parse_time_naming_the_key(change, message):
    from upt.config import check_config

    config = _default_config()
    check_config(config)
    change(config)
    with pytest.raises(ValueError, match=message):
        check_config(config)


def test_schema_stage_settings_are_the_typed_settings():
    """Every key the schema allows in a stage's settings is a field of StageSettings and back."""
    stage = SCHEMA["$defs"]["stage"]["properties"]
    assert set(stage) == {f.name for f in dataclasses.fields(StageSettings)}
    corrector = stage["corrector"]["properties"]
    assert set(corrector) == {f.name for f in dataclasses.fields(type(StageSettings().corrector))}


def test_loop_fields_are_stage_fields():
    loop = {f.name for f in dataclasses.fields(LoopSettings)} - {"seed"}
    assert loop <= {f.name for f in dataclasses.fields(StageSettings)}
    assert StageSettings(epochs=3, lr=0.5).loop(seed=7) == LoopSettings(epochs=3, lr=0.5, seed=7)


def _choices(*argv):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]
    return next(a for a in sub._actions if a.dest == argv[1]).choices


def test_cli_choices_are_the_vocabulary():
    assert list(_choices("train", "stage")) == list(vocabulary.STAGES)
    assert list(_choices("evaluate", "baseline")) == list(vocabulary.BASELINES)
    assert list(_choices("generate", "pde")) == list(vocabulary.GENERATORS)


def test_every_implementation_is_importable_and_is_what_it_names():
    from upt.training.stages import Stage

    for name, stage in vocabulary.STAGES.items():
        cls = stage.load()
        assert issubclass(cls, Stage) and cls.name == name
        assert set(stage.keeps) <= set(vocabulary.MODULES) and set(stage.trains) <= set(vocabulary.MODULES)
    for baseline in vocabulary.BASELINES.values():
        assert callable(baseline.load())


def test_derived_stage_groups():
    assert vocabulary.ENCODER_STAGES == ("autoencoder", "joint")
    assert vocabulary.LATENT_STAGES == ("operator", "diffusion", "distill", "consistency")
    assert vocabulary.STUDENT_STAGES == ("distill", "consistency")
    # what a result holds decides what the next stage copies: an operator result holds E, A and D
    assert vocabulary.stage("operator").holds == ("encoder", "approximator", "decoder")
    assert vocabulary.stage("autoencoder").holds == ("encoder", "decoder")


def test_unknown_names_fail_naming_the_name():
    with pytest.raises(UptError, match="unknown stage 'autoencodr'.*autoencoder"):
        vocabulary.stage("autoencodr")
    with pytest.raises(UptError, match="unknown baseline 'persistance'"):
        vocabulary.baseline("persistance")


def test_vocabulary_is_torch_free():
    """The workflow imports it (and the settings and planner) at parse time."""
    code = "import sys, upt.vocabulary, upt.settings, upt.arms, upt.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- typed settings ------------------------------------------------------------------------------

RAW = {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
       "stage": {"epochs": 2, "lr": 1e-3, "horizon": 2, "losses": {"next_step": 1.0}, "corrector": {"depth": 3}}}


def test_settings_parse_into_types():
    s = TrainSettings.parse(RAW, "operator")
    assert s.stage.epochs == 2 and s.stage.horizon == 2 and s.stage.losses == {"next_step": 1.0}
    assert s.stage.corrector.depth == 3 and s.stage.corrector.heads == 2  # defaults fill the rest
    assert s.params == () and s.stage.loop(s.seed).epochs == 2


@pytest.mark.parametrize("change, message", [
    (lambda r: r["stage"].update(epochz=1), r"--settings: stage\.epochz: unknown key"),
    (lambda r: r["stage"].update(epochs="3"), r"stage\.epochs: expected int, got '3'"),
    (lambda r: r["stage"].update(epochs=True), r"stage\.epochs: expected int"),
    (lambda r: r["stage"].update(lr="fast"), r"stage\.lr: expected a number"),
    (lambda r: r["stage"]["corrector"].update(deep=2), r"stage\.corrector\.deep: unknown key"),
    (lambda r: r["stage"]["losses"].update(reconstruction=1.0), r"stage\.losses\.reconstruction: stage operator "
                                                                r"has no loss term"),
    (lambda r: r["model"].update(tokenz=8), r"model\.tokenz: unknown model option"),
    (lambda r: r.update(sead=1), r"--settings: sead: unknown key"),
    (lambda r: r.pop("seed"), r"--settings: seed: missing"),
    (lambda r: r.update(params="nu"), r"params: expected tuple"),
])
def test_settings_refuse_what_they_do_not_know(change, message):
    raw = json.loads(json.dumps(RAW))
    change(raw)
    with pytest.raises(UptError, match=message):
        TrainSettings.parse(raw, "operator")


def test_upt_train_refuses_a_typo_before_reading_data(tmp_path, capsys):
    """The issue's case: a mistyped stage key used to train 10 epochs with the default and exit 0."""
    from upt.cli import main

    raw = json.loads(json.dumps(RAW))
    raw["stage"]["epochz"] = 1
    code = main(["train", "operator", "--data", str(tmp_path / "none.nc"), "--stats", str(tmp_path / "none.json"),
                 "--settings", json.dumps(raw), "--out", str(tmp_path / "m.pt")])
    assert code == 1 and "stage.epochz: unknown key" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# --- extending: one vocabulary entry plus its implementation --------------------------------------

def decoder_only_stage():
    """The docs' example stage (docs/architecture.md, "How to add"): the decoder alone, fine-tuned
    on the reconstruction of the grid from a frozen encoder."""
    from upt import losses
    from upt.training.stages import FieldStage

    class DecoderStage(FieldStage):
        name = "decoder"

        def __init__(self, model, weights, pos, grid_shape, queries=None):
            super().__init__(model, weights, (model.decoder,), pos, grid_shape, queries)

        @classmethod
        def build(cls, model, settings, train, base):
            return cls(model, settings.losses, train.pos, train.grid_shape, settings.queries)

        def forward(self, batch, generator):
            u = batch["u"]
            z = self.encode(u, batch)
            pos = self.pos.expand(u.shape[0], -1, -1)
            return losses.combine({"reconstruction": (self.weight("reconstruction"), lambda: losses.next_step_mse(
                self.model.decode(z, pos), u[..., -self.model.fields:]))})

    return DecoderStage


def linear_extrapolation(test, **options):
    """A baseline for the extension test: u_{t+k} = u_t + k (u_t - u_{t-1}) of the normalized frames."""
    import torch

    h = test.data.history
    last, before = test.frames[:, h - 1], test.frames[:, max(h - 2, 0)]
    k = torch.arange(1, test.steps + 1, dtype=last.dtype)[None, :, None, None]
    return last[:, None] + k * (last - before)[:, None]


@pytest.fixture
def extended_vocabulary(monkeypatch):
    """A stage and a baseline added the documented way: one entry each, implementations here."""
    import sys

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "DecoderStage", decoder_only_stage(), raising=False)
    monkeypatch.setitem(vocabulary.STAGES, "decoder", vocabulary.Stage(
        "decoder", "fields", ("decoder",), ("reconstruction",), init="required",
        keeps=("encoder", "approximator", "decoder"), implementation=f"{__name__}:DecoderStage"))
    monkeypatch.setitem(vocabulary.BASELINES, "linear", vocabulary.Baseline(
        "linear", f"{__name__}:linear_extrapolation"))


def test_a_new_stage_is_one_entry_plus_its_class(extended_vocabulary, burgers, tmp_path):
    """Added to STAGES, the stage is a CLI choice, parses its settings, plans after an operator and
    trains the decoder alone from its init."""
    import torch

    from upt.arms import plan
    from upt.models.checkpoint import load_checkpoint
    from upt.training.run import run_stage

    assert "decoder" in _choices("train", "stage")
    cfg = {"datasets": {"d": {}}, "arms": {"ref": {}},
           "base": {"model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                    "pipeline": ["autoencoder", "operator", "decoder"], "training": {"epochs": 1},
                    "stages": {"autoencoder": {"losses": {"reconstruction": 1.0}},
                               "operator": {"losses": {"next_step": 1.0}},
                               "decoder": {"losses": {"reconstruction": 1.0}}}}}
    assert [run.stage for run in plan(cfg, "d")["ref"]] == ["autoencoder", "operator", "decoder"]

    data, stats = burgers
    settings = {"seed": 0, "model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                "stage": {"epochs": 1, "batch_size": 8, "losses": {"reconstruction": 1.0}}}
    run_stage("autoencoder", settings, data, stats, tmp_path / "ae" / "model.pt")
    run_stage("decoder", settings, data, stats, tmp_path / "dec" / "model.pt", init=tmp_path / "ae" / "model.pt")
    before, after = load_checkpoint(tmp_path / "ae" / "model.pt"), load_checkpoint(tmp_path / "dec" / "model.pt")
    assert after.stage == "decoder"
    for name, tensor in after.model.encoder.state_dict().items():  # kept from the init, frozen
        assert torch.equal(tensor, before.model.encoder.state_dict()[name])
    assert any(not torch.equal(t, before.model.decoder.state_dict()[n])  # trained
               for n, t in after.model.decoder.state_dict().items())


def test_a_new_baseline_is_one_entry_plus_its_function(extended_vocabulary, burgers, tmp_path):
    from upt.evaluation.evaluate import evaluate_baseline
    from upt.results import read_summary

    assert "linear" in _choices("evaluate", "baseline")
    data, stats = burgers
    evaluate_baseline("linear", data, stats, tmp_path, dataset="d", seed=0, horizons=(1, 2))
    summary = read_summary(tmp_path / "summary.csv")
    assert set(summary["arm"]) == {"linear"} and "nrmse_step1" in set(summary["metric"])
