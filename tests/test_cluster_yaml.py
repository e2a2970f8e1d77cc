"""cluster.yaml passes Ray's own autoscaler config preparation and schema validation, and keeps the policy:
CPU-only head, GPU workers that scale from zero, gpu extra installed, nothing open to the internet. Also checks
that .rayignore keeps artifacts out of Ray's real working_dir package.

Nothing here calls AWS (there is no cloud from this machine) and nothing is mocked: `prepare_config` and
`validate_config` are Ray's local steps of `ray up` that run before any provider call.
"""

import copy
import re
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray._private.runtime_env.packaging import create_package
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
# GPUs per instance of the types this project uses (AWS documentation); the head must be none of these.
GPUS_PER_INSTANCE = {"g5.xlarge": 1, "g5.2xlarge": 1, "g5.12xlarge": 4, "g5.48xlarge": 8, "p4d.24xlarge": 8}


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw):
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def all_commands(config):
    keys = [
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ]
    cmds = [c for k in keys for c in config.get(k, [])]
    for node_type in config["available_node_types"].values():
        cmds += node_type.get("initialization_commands", []) + node_type.get("worker_setup_commands", [])
    return cmds


def test_passes_rays_schema_and_validation(prepared, raw):
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # the validation is live: an unknown key is rejected by the same call
    with pytest.raises(jsonschema.ValidationError):
        validate_config({**prepared, "not_a_ray_field": 1})
    with pytest.raises(jsonschema.ValidationError):
        bad = copy.deepcopy(prepared)
        bad["available_node_types"]["head_cpu"]["resources"]["GPU"] = 0.5
        validate_config(bad)


def test_nothing_is_open_to_the_world(raw, prepared):
    text = CLUSTER_YAML.read_text()
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        assert "0.0.0.0/0" not in code and "::/0" not in code, line
    # Ray auto-creates a security group only for node types without SecurityGroupIds, and that group gets
    # ssh from 0.0.0.0/0; so every node type must name the user's own group.
    for name, node_type in prepared["available_node_types"].items():
        groups = node_type["node_config"].get("SecurityGroupIds")
        assert groups and all(g.startswith("sg-") for g in groups), name
        assert "NetworkInterfaces" not in node_type["node_config"], name
    assert "security_group" not in prepared["provider"]
    # the dashboard/job API stays on the head's loopback (reached through `ray dashboard`'s ssh tunnel)
    head_start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start


def test_head_is_cpu_only_and_gpu_workers_scale_from_zero(prepared):
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] > 0
    assert head["resources"].get("sparsepo_head") == 1
    assert head["node_config"]["InstanceType"] not in GPUS_PER_INSTANCE
    assert not re.match(r"^(g|p)\d", head["node_config"]["InstanceType"])
    workers = {k: v for k, v in types.items() if k != prepared["head_node_type"]}
    gpu_counts = []
    for name, node_type in workers.items():
        itype = node_type["node_config"]["InstanceType"]
        assert node_type["resources"]["GPU"] == GPUS_PER_INSTANCE[itype], name
        assert node_type["min_workers"] == 0 and node_type["max_workers"] >= 1, name
        gpu_counts.append(node_type["resources"]["GPU"])
    assert 1 in gpu_counts and max(gpu_counts) >= 4
    markets = [w["node_config"].get("InstanceMarketOptions", {}).get("MarketType") for w in workers.values()]
    assert "spot" in markets and None in markets  # spot offered, on-demand fallback kept
    assert prepared["max_workers"] >= sum(w["min_workers"] for w in workers.values())
    assert 0 < prepared["idle_timeout_minutes"] <= 30
    assert prepared["provider"]["cache_stopped_nodes"] is False


def test_setup_installs_the_project_with_gpu_and_qlora_extras(raw, prepared):
    # prepare_config merges setup_commands into both head and worker setup
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(re.search(r"pip install .*-e \"\.\[gpu,qlora\]\"", c) for c in prepared[key]), key
    # the synced folder is the repository, whose pyproject defines that extra
    (remote,) = [r for r, local in raw["file_mounts"].items() if (ROOT / local).resolve() == ROOT]
    assert any(f"cd {remote} &&" in c for c in raw["setup_commands"])
    assert "gpu = [" in (ROOT / "pyproject.toml").read_text() and "qlora = [" in (ROOT / "pyproject.toml").read_text()
    # no command left over from Ray's defaults.yaml installing a nightly Ray wheel
    assert not any("ray-wheels" in c or "dev0" in c for c in all_commands(prepared))
    assert set(prepared["rsync_filter"]) >= {".gitignore", ".rayignore"}


def test_images_match_installed_ray_and_python(prepared):
    tag = f"{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
    docker = prepared["docker"]
    assert docker["image"] == f"rayproject/ray:{tag}-gpu"
    assert docker["head_image"] == f"rayproject/ray:{tag}-cpu"


def test_rayignore_keeps_artifacts_out_of_the_working_dir_package(tmp_path):
    """Ray's own packaging (the code `ray job submit --working-dir` runs), with .gitignore turned off so the
    .rayignore alone is tested."""
    src = tmp_path / "repo"
    keep = ["pyproject.toml", "sparsepo/experiments/sentiment/pareto.py", "tune/frontier.py", "configs/a.yaml", "tests/test_x.py"]
    drop = [
        ".venv/lib/x.py",
        ".cache/sparsepo/model/config.json",
        "runs/r1/metrics.json",
        "outputs/o.png",
        "ray_results/t/result.json",
        "model.safetensors",
        "ckpt/policy.pt",
        "data/train.parquet",
        "sparsepo.egg-info/PKG-INFO",
        "sparsepo/__pycache__/a.pyc",
        ".git/HEAD",
        "w.gguf",
    ]
    for rel in keep + drop:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("x")
    (src / ".rayignore").write_text((ROOT / ".rayignore").read_text())
    pkg = tmp_path / "pkg.zip"
    create_package(str(src), pkg, include_gitignore=False, excludes=[])
    names = set(zipfile.ZipFile(pkg).namelist())
    assert set(keep) <= names
    assert not names & set(drop), sorted(names & set(drop))
