"""One sweep trial: its ``TrainConfig`` from the base config and its params, the Tune function trainable that
fits its Ray Train run, and its folder name.

A trial config (Tune's ``param_space`` entry of one trial) holds the base config dict (:data:`BASE_KEY`), the
experiment path (:data:`EXPERIMENT_KEY`), the variant bundles (:data:`VARIANTS_KEY`) and the trial's params as
dotted config keys or variant axis -> variant name.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from sparsepo.config.schema import TrainConfig, from_dict
from sparsepo.io import iter_jsonl
from sparsepo.objectives.losses import get_loss
from sparsepo.sweeps.search_space import check_key

BASE_KEY, EXPERIMENT_KEY, VARIANTS_KEY = "_base", "_experiment", "_variants"  # reserved trial-config keys


def build_trial_config(base: dict[str, Any], params: dict[str, Any], variants: dict[str, Any] | None = None,
                       where: str = "trial") -> TrainConfig:
    """``base`` (a ``TrainConfig.to_dict()``) updated by ``params`` (dotted keys, or variant axis -> name)."""
    flat = _flat_params(params, variants or {}, where)
    values = copy.deepcopy(base)
    if "method" in flat and flat["method"] != values.get("method"):
        # The base's loss entries are the base method's hyper-parameters, not the trial method's.
        takes = get_loss(str(flat["method"])).defaults
        values["loss"] = {k: v for k, v in (values.get("loss") or {}).items() if k in takes}
    for key, value in flat.items():
        check_key(key, where)
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    label = f"{where} ({', '.join(f'{k}={v}' for k, v in params.items())})"
    try:
        return from_dict(values, where=label)
    except ValueError as err:  # loss-name errors come without a location
        raise ValueError(str(err) if label in str(err) else f"{label}: {err}") from None


def _flat_params(params: dict[str, Any], variants: dict[str, Any], where: str) -> dict[str, Any]:
    """``params`` as dotted config keys only: each variant axis replaced by its chosen variant's keys."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if key in variants:
            if value not in variants[key]:
                raise ValueError(f"{where}: {key}={value!r} is not one of the variants {sorted(variants[key])}")
            flat.update(variants[key][value])
        else:
            flat[key] = value
    return flat


def trial_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: fit the trial's Ray Train run, reporting every metric to Tune.

    ``config`` holds the base config dict (``_base``), the experiment path (``_experiment``), variant bundles
    (``_variants``) and the trial's params as dotted keys. The Train run is stored at
    ``<experiment>/<trial dir>/train``: a trial restarted after a crash (or ``Tuner.restore``) refits the same
    run, which Ray Train (or, with ``run.num_workers=0``, the trial's own loop) resumes from its latest checkpoint. Tune restarts such a trial's progress files from
    scratch (it holds no Tune checkpoint), so the steps saved in that checkpoint are reported again first.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from sparsepo.training.local_mode import is_local
    from sparsepo.training.train import make_trainer

    params = trial_params(config)
    cfg = build_trial_config(config[BASE_KEY], params, config.get(VARIANTS_KEY))
    trial_dir = Path(tune.get_context().get_trial_dir()).name
    values = cfg.to_dict()
    values["run"].update(storage_path=f"{config[EXPERIMENT_KEY]}/{trial_dir}", name="train")
    done = saved_history(f"{values['run']['storage_path']}/train")
    for metrics in done:
        tune.report(metrics)
    if done and cfg.optim.max_steps is not None and done[-1].get("step") == cfg.optim.max_steps:
        return  # the run had finished; only Tune had not heard of its last steps
    trial = from_dict(values)
    # Local mode calls no run_config callback: its loop reports to Tune itself (sparsepo.training.local_mode).
    make_trainer(trial, callbacks=None if is_local(trial) else [TuneReportCallback()]).fit()


def saved_history(train_run: str) -> list[dict[str, float]]:
    """Reported metrics kept in the last complete checkpoint of a Train run folder (local or URI); [] if none."""
    import pyarrow.fs

    from sparsepo.training.checkpoint import HISTORY_FILE, complete_checkpoints

    found = complete_checkpoints(train_run)
    if not found:
        return []
    fs, path = pyarrow.fs.FileSystem.from_uri(found[-1][1])
    with fs.open_input_stream(f"{path}/{HISTORY_FILE}") as f:
        return [r for _, r in iter_jsonl(f.readall().decode(), found[-1][1])]


def trial_params(config: dict[str, Any], expand: bool = False) -> dict[str, Any]:
    """The trial's own params (sampled values and space constants) from a trial config; ``expand`` adds the
    config keys of each chosen variant (``mask_kind=mapo`` -> also ``method=mapo``...)."""
    params = {k: v for k, v in config.items() if not k.startswith("_")}
    variants = config.get(VARIANTS_KEY) or {}
    extra = {k: v for axis, name in params.items() if axis in variants for k, v in variants[axis].get(name, {}).items()}
    return {**params, **extra} if expand else params


def trial_dirname(trial: Any) -> str:
    """``trial_<id>_<param>=<value>,...``: the trial's own params only (searchers' default tags list the
    whole config, base included), cut to a safe length; the trial id keeps names unique."""
    params = ",".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial_params(trial.config).items())
    return re.sub(r"[^\w.=,+-]", "_", f"trial_{trial.trial_id}_{params}")[:120]
