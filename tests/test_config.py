"""Arms resolve as small overrides of one base; shared stage runs are found and never duplicated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from upt.arms import deep_merge, plan, resolve_arm, stage_settings
from upt.models.presets import ModelSize

REPO = Path(__file__).resolve().parents[1]


def config(**arms):
    return {
        "datasets": {"d": {}},
        "base": {"model": {"preset": "upt-tiny"}, "history": 1, "params": [],
                 "pipeline": ["autoencoder", "operator"], "training": {"lr": 1e-3, "queries": None},
                 "stages": {"autoencoder": {"epochs": 1, "losses": {"reconstruction": 1.0}},
                            "operator": {"epochs": 2, "losses": {"next_step": 1.0}},
                            "joint": {"epochs": 2, "losses": {"next_step": 1.0}},
                            "diffusion": {"epochs": 1, "losses": {"denoising": 1.0}}}},
        "arms": arms,
    }


def test_deep_merge_overrides_leaves_only():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    assert deep_merge(base, {"a": {"c": {"d": 3}}, "e": [2]}) == {"a": {"b": 1, "c": {"d": 3}}, "e": [2]}
    assert base["a"]["c"]["d"] == 2  # the base is not modified


def test_stage_settings_merge_training_and_stage():
    cfg = config(ref={}, fast={"training": {"lr": 0.1}, "stages": {"operator": {"losses": {"rollout": 0.5}}}})
    settings = stage_settings(resolve_arm(cfg, "fast"), "operator", seed=3)
    assert settings["seed"] == 3 and settings["stage"]["lr"] == 0.1
    assert settings["stage"]["losses"] == {"next_step": 1.0, "rollout": 0.5}


def test_plan_shares_runs_where_arms_agree():
    cfg = config(ref={}, ushaped={"model": {"approximator": "ushaped"}}, wide={"model": {"dim": 32}},
                 joint={"pipeline": ["autoencoder", "joint"]},
                 diffusion={"pipeline": ["autoencoder", "operator", "diffusion"]})
    chains = plan(cfg, "d")
    names = {arm: [f"{r.owner}/{r.stage}" for r in chain] for arm, chain in chains.items()}
    assert names == {
        "ref": ["ref/autoencoder", "ref/operator"],
        "ushaped": ["ref/autoencoder", "ushaped/operator"],  # the approximator does not shape E and D
        "wide": ["wide/autoencoder", "wide/operator"],
        "joint": ["ref/autoencoder", "joint/joint"],
        "diffusion": ["ref/autoencoder", "ref/operator", "diffusion/diffusion"],
    }
    assert chains["diffusion"][1] is chains["ref"][1]
    assert chains["diffusion"][2].encoder is chains["ref"][0]  # reads the reference encoder's cache


def test_latent_stage_needs_an_encoder_stage():
    with pytest.raises(ValueError, match="needs an encoder stage"):
        plan(config(bad={"pipeline": ["operator"]}), "d")


def test_schema_lists_exactly_the_model_fields():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    listed = set(schema["$defs"]["arm"]["properties"]["model"]["properties"])
    fno = {"family", "variant", "modes", "layers", "hidden", "match_params_of", "match_part"}
    assert listed == {f.name for f in dataclasses.fields(ModelSize)} | {"preset", "encoder", "observed_fraction", "periodic"} | fno


@pytest.mark.parametrize("name", ["config.yaml", "pdebench.yaml", "study.yaml", "ns2d.yaml", "ns2d-64.yaml"])
def test_shipped_configs_plan(name):
    cfg = yaml.safe_load((REPO / "config" / name).read_text())
    for dataset in cfg["datasets"]:
        chains = plan(cfg, dataset)
        assert cfg["reference_arm"] in chains



def test_the_workflow_imports_no_torch_while_building_its_dag():
    """Every snakemake call (each cluster job runs one) parses the Snakefile; torch would add ~1 s."""
    import subprocess
    import sys

    lines = [line.split() for smk in (REPO / "workflow" / "rules").glob("*.smk")
             for line in smk.read_text().splitlines() if line.startswith(("import upt", "from upt"))]
    modules = sorted({words[1] for words in lines})
    assert "upt.models.sizes" in modules
    code = "; ".join(f"import {m}" for m in modules) + "; import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", modules


def generated(resolution=128, reduce_x=1, pde="burgers1d"):
    return {"source": {"generate": {"pde": pde, "samples": 4, "resolution": resolution}},
            "convert": {"reduce_x": reduce_x}}


@pytest.mark.parametrize("model, message", [
    ({"preset": "upt-cpu-s", "tokens": 48}, "tokens=48 exceed the 32 patches"),
    ({"preset": "upt-cpu-s", "tokens": 12, "patch_size": 4}, "tokens=12 do not tile"),
    ({"preset": "upt-cpu-s", "patch_size": 3}, "patch_size=3 does not divide"),
    ({"preset": "upt-cpu-s", "pos_freqs": 8}, "pos_freqs=8 exceeds the 7 octaves"),
    ({"preset": "upt-cpu-s", "tokens": 256, "patch_size": None}, "no patch size cuts the grid"),
])
def test_a_model_that_cannot_fit_the_grid_fails_at_parse_time_naming_arm_and_key(model, message):
    from upt.config import check_config

    cfg = config(ref={}, bad={"model": model})
    cfg["datasets"] = {"burgers": generated(resolution=256, reduce_x=2)}  # a 128-point grid
    with pytest.raises(ValueError, match=rf"arms\.bad\.model on dataset burgers: .*{message}"):
        check_config(cfg)


@pytest.mark.parametrize("where, message", [
    (lambda c: c.update(reference_arm="nope"), "reference_arm: unknown arm 'nope'"),
    (lambda c: c.update(claims=[{"arm": "ref", "control": "nope"}]), r"claims\[0\]\.control: unknown arm"),
    (lambda c: c["datasets"]["burgers"].update(arms=["ref", "nope"]), r"datasets\.burgers\.arms: unknown arm"),
    (lambda c: c["arms"].update(fno={"model": {"family": "fno", "match_params_of": "nope"}}),
     r"arms\.fno\.model\.match_params_of: unknown arm"),
    (lambda c: c["arms"].update(fno={"model": {"family": "fno", "match_part": "approximator"}}),
     r"arms\.fno\.model\.match_part: only with match_params_of"),
    (lambda c: c.update(claims=[{"arm": "ref", "control": "ref", "sweep": {"ref": 1, "nope": 2}}]),
     r"claims\[0\]\.sweep: unknown arm 'nope'"),
])
def test_an_unknown_arm_anywhere_fails_naming_the_key(where, message):
    from upt.config import check_config

    cfg = config(ref={})
    cfg["datasets"] = {"burgers": generated()}
    check_config(cfg)  # the valid config passes
    where(cfg)
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


def test_the_default_and_pdebench_configs_pass_the_parse_time_checks():
    from upt.config import check_config

    for name in ("config.yaml", "pdebench.yaml", "study.yaml", "ns2d.yaml", "ns2d-64.yaml"):
        check_config(yaml.safe_load((REPO / "config" / name).read_text()))


def test_an_odd_navier_stokes_grid_fails_at_parse_time():
    from upt.config import check_config

    cfg = config(ref={})
    cfg["datasets"] = {"ns": {"source": {"generate": {"pde": "ns2d", "samples": 4, "resolution": 33}}}}
    with pytest.raises(ValueError, match=r"datasets\.ns\.source\.generate\.resolution: 33 is odd"):
        check_config(cfg)
