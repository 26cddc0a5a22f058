"""``upt train``: build one stage of one arm from its settings, run the loop, save the result.

``settings`` is the arm's resolved configuration for this stage (:func:`upt.arms.stage_settings`),
parsed into :class:`upt.settings.TrainSettings`. What a stage reads, trains and takes from its
init is its entry in :data:`upt.vocabulary.STAGES`; there is no branch on a stage's name here:

- a ``fields`` stage reads the dataset's frames and builds its model fresh from the arm's model
  settings (the stage class may rewrite them: the FNO sizes itself); a ``latents`` stage reads the
  latent cache of its encoder and rebuilds the model of its ``init``;
- every module of the stage's ``keeps`` that the init's result holds is copied from the init
  (frozen parts stay bit-identical to it);
- the stage class (``implementation``) builds its training module with :meth:`~upt.training.stages.Stage.build`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from upt import vocabulary
from upt.data.dataset import FieldDataset
from upt.errors import UptError
from upt.models.checkpoint import load_checkpoint, save_checkpoint
from upt.models.factory import model_from_spec
from upt.results import STATE
from upt.settings import TrainSettings
from upt.training import distributed
from upt.training.cache import LatentWindows, load_cache
from upt.training.loop import fit


def run_stage(stage: str, settings: dict, data: str | Path, stats: str | Path, out: str | Path, *,
              init: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """Train ``stage`` and write its result checkpoint to ``out`` (state and metrics beside it)."""
    kind = vocabulary.stage(stage)
    stage_class = kind.load()  # its training module (upt.training.stages)
    parsed = TrainSettings.parse(settings, stage)
    if kind.init == "required" and init is None:
        raise UptError(f"stage {stage} needs --init (the checkpoint it continues from)")
    if kind.init == "none" and init is not None:
        raise UptError(f"stage {stage} starts from scratch; it takes no --init")
    if kind.reads == "latents" and cache is None:
        raise UptError(f"stage {stage} needs --cache (the latent cache of its encoder)")
    distributed.init()
    _report_processes(stage, parsed.stage.gpus)
    torch.manual_seed(parsed.seed)
    base = load_checkpoint(init) if init is not None else None
    if base is not None:  # e.g. a student's teacher, checked before any data is read
        stage_class.check_init(parsed.stage, base, str(init))

    if kind.reads == "fields":
        train, val = (FieldDataset(data, stats, split, history=parsed.history, horizon=parsed.stage.horizon,
                                   params=parsed.params, preload_mb=parsed.stage.preload_mb)
                      for split in ("train", "val"))
        dims = {"dim_space": len(train.grid_shape), "fields": len(train.fields), "history": parsed.history,
                "cond_dim": train.cond_dim}
        spec = stage_class.model_spec(parsed.model, dims, train.grid_shape)
        model = model_from_spec(spec)
    else:
        spec = {**base.model_spec, **parsed.model}
        model = model_from_spec(spec)
        latents = load_cache(cache, base.model.encoder)
        train, val = (LatentWindows(latents, split, parsed.stage.horizon) for split in ("train", "val"))
    if base is not None:
        _copy_modules(base.model, model, [m for m in kind.keeps if m in vocabulary.stage(base.stage).holds])
    module = stage_class.build(model, parsed.stage, train, base)

    out = Path(out)
    fingerprint = json.dumps([settings, str(init), str(cache)], sort_keys=True)
    best = fit(module, train, val, parsed.stage.loop(parsed.seed), out.parent, fingerprint=fingerprint)
    if distributed.rank() == 0:
        save_checkpoint(out, stage=stage, model_spec=spec, model=best.model, corrector_spec=module.corrector_spec,
                        corrector=getattr(best, "corrector", None), info={"seed": parsed.seed, "settings": settings})
        (out.parent / STATE).unlink(missing_ok=True)  # the run is complete: its result is the checkpoint
    distributed.shutdown()
    return out


def _report_processes(stage: str, gpus: int) -> None:
    """Say where the run trains, and warn when that is not what its settings asked for (e.g. an
    arm meant for 4 GPUs started without torchrun trains correctly, just 4x slower)."""
    world, device = distributed.world_size(), distributed.device()
    if distributed.rank() != 0:
        return
    print(f"{stage}: {world} process{'es' if world > 1 else ''} on {device.type}", flush=True)
    if gpus > 1 and world != gpus:
        warnings.warn(f"settings ask for {gpus} GPUs (training.gpus) but {world} process(es) run; "
                      f"launch with torchrun --nproc-per-node={gpus} to use them")
    if gpus and device.type != "cuda":
        warnings.warn(f"settings ask for {gpus} GPUs (training.gpus) but CUDA is not available: training on CPU")


def _copy_modules(source, target, names) -> None:
    for name in names:
        try:
            getattr(target, name).load_state_dict(getattr(source, name).state_dict())
        except RuntimeError as err:
            raise UptError(f"the {name} of --init does not match this arm's model: {str(err)[:200]}") from None
