"""2D velocity data through the UPT: a point-cloud view with the mesh encoder, the divergence
prior in the autoencoder, and the divergence of the decoded velocity in the evaluation."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from upt.errors import UptError
from upt.evaluation.evaluate import evaluate_model
from upt.models import build_model
from upt.training.cache import build_cache
from upt.training.run import run_stage


def test_each_trajectory_is_observed_at_its_own_fixed_subset():
    model = build_model("upt-tiny", dim_space=2, fields=2, encoder="mesh", observed_fraction=0.25)
    a = model.observation_mask(torch.tensor([3, 4, 3]), 64)
    assert a.shape == (3, 64) and (a.sum(1) == 16).all()
    assert torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])  # a function of the trajectory id
    assert torch.equal(model.observation_mask(torch.tensor([3]), 64)[0], a[0])  # whatever the batch
    assert build_model("upt-tiny", dim_space=2, fields=2, encoder="mesh").observation_mask(torch.tensor([3]), 64) is None
    for bad in (dict(encoder="grid", observed_fraction=0.5), dict(encoder="mesh", observed_fraction=1.5)):
        with pytest.raises(UptError, match="observed_fraction"):
            build_model("upt-tiny", dim_space=2, fields=2, **bad)


def train(data, out, model, ae_losses):
    """Autoencoder, latent cache and operator on ``data`` (nc, stats), written under ``out``."""
    settings = {"seed": 0, "model": model, "history": 1, "params": [],
                "stage": {"epochs": 1, "batch_size": 4, "queries": 32, "losses": ae_losses}}
    ae = out / "ae.pt"
    run_stage("autoencoder", settings, *data, ae)
    build_cache(ae, *data, out / "latents.pt")
    op = out / "op.pt"
    run_stage("operator", {**settings, "stage": {**settings["stage"], "losses": {"next_step": 1.0}}},
              *data, op, init=ae, cache=out / "latents.pt")
    return op


def test_mesh_encoder_on_a_point_cloud_view_is_scored_on_the_full_grid(ns2d_data, tmp_path):
    op = train(ns2d_data, tmp_path / "mesh", {"preset": "upt-tiny", "encoder": "mesh", "observed_fraction": 0.5},
               {"reconstruction": 1.0})
    evaluate_model(op, *ns2d_data, tmp_path, dataset="ns", arm="mesh", seed=0,
                   horizons=(1, 3))
    summary = pd.read_csv(tmp_path / "summary.csv").set_index(["mode", "metric"])["value"]
    assert {"latent", "physical", "reconstruction"} <= {m for m, _ in summary.index}
    assert summary[("latent", "nrmse_step3")] > 0
    # the decoded velocity's divergence beside the truth's (same finite-difference operator)
    assert summary[("truth", "divergence_rms")] >= 0 and summary[("latent", "divergence_rms")] > 0


def test_divergence_prior_trains_the_autoencoder_and_lowers_the_decoded_divergence(ns2d_data, tmp_path):
    """Same seed and data: only the divergence weight differs. The prior must reach the encoder and
    decoder (different weights) and make the decoded velocity more nearly divergence-free."""
    from upt.evaluation.scoring import TestSet, divergence_rms, reconstruction
    from upt.models.checkpoint import load_checkpoint

    results = {}
    for name, weight in (("plain", 0.0), ("div", 10.0)):
        losses = {"reconstruction": 1.0, **({"divergence": weight} if weight else {})}
        op = train(ns2d_data, tmp_path / name, {"preset": "upt-tiny", "tokens": 4, "patch_size": 8}, losses)
        model = load_checkpoint(op).model
        test = TestSet.load(*ns2d_data, 1)
        results[name] = (model, divergence_rms(test, reconstruction(test, model)))
    plain, div = results["plain"][0], results["div"][0]
    assert not torch.equal(plain.decoder.heads[0][0].weight, div.decoder.heads[0][0].weight)
    assert results["div"][1] < results["plain"][1]
