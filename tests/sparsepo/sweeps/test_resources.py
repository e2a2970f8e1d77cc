"""A sweep's resources per trial: a local-mode trial (run.num_workers=0) holds its training's share in its actor."""

from sparsepo.config.schema import load_config
from sparsepo.sweeps.resources import split_trial_cpus, trial_demand, trial_resources
from sparsepo.sweeps.trials import BASE_KEY, VARIANTS_KEY


def base_values(*over: str) -> dict:
    return load_config(None, ["run.cpus_per_worker=1.5", *over]).to_dict()


def test_a_trial_actor_reserves_the_training_cpus_only_in_local_mode():
    workers = {BASE_KEY: base_values("run.num_workers=2")}
    assert trial_resources(workers, driver_cpus=0.01) == {"CPU": 0.01}  # its Train workers reserve their own
    local = {BASE_KEY: base_values("run.num_workers=0")}
    assert trial_resources(local, driver_cpus=0.01) == {"CPU": 1.51}
    gpu = {BASE_KEY: base_values("run.num_workers=0", "run.use_gpu=true")}
    assert trial_resources(gpu, driver_cpus=0.5) == {"CPU": 0.5, "GPU": 1.0}
    # A trial's own params (here through a variant) decide, not the base config's.
    varied = {BASE_KEY: base_values("run.num_workers=2"), VARIANTS_KEY: {"mode": {"local": {"run.num_workers": 0}}},
              "mode": "local"}
    assert trial_resources(varied, driver_cpus=0.01) == {"CPU": 1.51}
    assert trial_resources({BASE_KEY: base_values(), "no.such_key": 1}, driver_cpus=0.25) == {"CPU": 0.25}


def test_a_local_mode_sweep_counts_one_training_process_per_trial():
    local, one = base_values("run.num_workers=0"), base_values("run.num_workers=1")
    assert trial_demand(local, {}, driver_cpus=0.01) == trial_demand(one, {}, driver_cpus=0.01) == {"CPU": 1.51, "GPU": 0.0}
    gpu = base_values("run.num_workers=0", "run.use_gpu=true")
    assert trial_demand(gpu, {}, driver_cpus=1.0) == {"CPU": 1.0, "GPU": 1.0}
    local["run"]["cpus_per_worker"] = one["run"]["cpus_per_worker"] = None
    assert split_trial_cpus(local, {}, 0.01, None) == split_trial_cpus(one, {}, 0.01, None)
