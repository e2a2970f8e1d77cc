"""Shared pytest set-up: offline HF hub, one asset cache per checkout, session fixtures for prepared assets.

The environment is set at import time, before any test module imports transformers / huggingface_hub
(which read HF_HUB_OFFLINE when first imported). The asset cache is the commands' own ($SPARSEPO_CACHE, else
~/.cache/sparsepo), so a test session reuses the assets `python -m sparsepo.assets prepare` (or an earlier
session) built.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _forget_dead_ray_cluster(marker: Path = Path("/tmp/ray/ray_current_cluster")) -> None:
    """`ray start` leaves its GCS address in ``marker``, and `ray.init()` without an address joins it. A cluster
    that died without `ray stop` leaves the file behind, and every later `ray.init()` hangs on the dead address:
    remove the file when nothing answers there, so the tests start their own local instances."""
    import socket

    try:
        host, port = marker.read_text().strip().rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=2).close()
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        marker.unlink(missing_ok=True)


_forget_dead_ray_cluster()

TINY_ARCHS = ("gpt2", "llama", "gpt_neox")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def asset_cache() -> Path:
    """The asset cache root the session uses."""
    from sparsepo.assets import cache_dir

    return cache_dir()


@pytest.fixture(scope="session")
def tiny_model_paths() -> dict[str, Path]:
    """arch -> folder of the tiny random model (gpt2, llama, gpt_neox), prepared once per cache."""
    from sparsepo.assets import tiny_model_path

    return {arch: tiny_model_path(arch) for arch in TINY_ARCHS}


@pytest.fixture(scope="session", params=TINY_ARCHS)
def tiny_arch_path(request, tiny_model_paths) -> tuple[str, Path]:
    """(arch, folder) for each tiny model: a test using it runs once per architecture."""
    return request.param, tiny_model_paths[request.param]


@pytest.fixture(scope="session")
def tiny_gpt2_path(tiny_model_paths) -> Path:
    return tiny_model_paths["gpt2"]


@pytest.fixture(scope="session")
def tiny_llama_path(tiny_model_paths) -> Path:
    return tiny_model_paths["llama"]


@pytest.fixture(scope="session")
def tiny_gpt_neox_path(tiny_model_paths) -> Path:
    return tiny_model_paths["gpt_neox"]


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """Folder of SmolLM2-135M-Instruct (float32 HF format); the first session per cache converts it (~1 min)."""
    from sparsepo.assets import smollm2_path

    return smollm2_path()


@pytest.fixture(scope="session")
def punkt_data_dir() -> Path:
    """NLTK data dir holding tokenizers/punkt_tab/english/."""
    from sparsepo.assets import punkt_dir

    return punkt_dir()


@pytest.fixture(scope="session")
def humaneval_file() -> Path:
    from sparsepo.assets import humaneval_path

    return humaneval_path()


# The fast tier (`pytest -m "not slow"`, under 3 minutes on a 2-core CPU) leaves out whatever starts Ray, vLLM or
# lm-eval, trains through Ray Train or runs a real SmolLM2: tests that use these fixtures or live in these modules
# (besides tests marked @pytest.mark.slow themselves).
SLOW_FIXTURES = {"local_ray", "vllm_run", "ray_run", "smollm2_dir", "multinode"}
SLOW_MODULES = {
    "tests/sparsepo/evaluation/test_cli_end_to_end.py",
    "tests/sparsepo/evaluation/test_openllm.py",
    "tests/sparsepo/training/test_smollm2_training.py",
    "tests/sparsepo/training/test_train.py",
    "tests/sparsepo/training/test_trainer.py",
    "tests/sparsepo/analysis/test_token_values.py",
    "tests/sparsepo/experiments/sentiment/test_frontier.py",
    "tests/sparsepo/sweeps/test_sweep.py",
    "tests/sparsepo/experiments/sentiment/test_checkpoint_evaluation_s3.py",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        module = Path(str(item.fspath)).resolve().relative_to(REPO_ROOT).as_posix()
        if module.startswith("tests/cluster/") or "multinode" in getattr(item, "fixturenames", ()):
            # the cluster tier: several Ray nodes, object storage
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)
        elif module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for one test module. ``address="local"``: a fresh instance even when another
    (a ``ray start`` head) runs on this machine."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def multinode(s3_server, tmp_path_factory):
    """Three Ray nodes on this machine (``ray.cluster_utils.Cluster``) for one test module: a head without CPUs,
    which runs only the driver, and two 2-CPU worker nodes, so every trial, Train worker and task runs on a node
    other than the driver's and reaches storage itself. Each worker node has its own ``$SPARSEPO_CACHE`` (the
    prepared offline assets linked in; its downloads of storage URIs, ``remote/``, its own) and temp folder.
    Started after the S3 server's variables are set (the nodes inherit them); the dashboard serves Ray's State API.
    Yields ``(cluster, [node, node], [cache, cache])``."""
    import ray
    from ray.cluster_utils import Cluster

    from sparsepo.assets import cache_dir

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_port": free_port()})
    nodes, caches = [], []
    for i in range(2):
        root = tmp_path_factory.mktemp(f"node{i}")
        cache, tmp = root / "cache", root / "tmp"
        tmp.mkdir()
        cache.mkdir()
        for prepared in ("models", "data", "nltk_data"):  # what `sparsepo assets prepare` put on every node
            if (cache_dir() / prepared).exists():
                (cache / prepared).symlink_to(cache_dir() / prepared)
        env = {"SPARSEPO_CACHE": str(cache), "TMPDIR": str(tmp)}
        nodes.append(cluster.add_node(num_cpus=2, env_vars=env))
        caches.append(cache)
    ray.init(address=cluster.address)
    yield cluster, nodes, caches
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's, on 127.0.0.1) for the session, reached through the standard AWS
    variables that pyarrow, Ray storage and boto3 read (``AWS_ENDPOINT_URL``, keys, region); yields its URL.
    Set before any Ray instance starts, so Ray's workers inherit them."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server, request) -> str:
    """A fresh, empty bucket on the S3 server: ``s3://<bucket>``."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid() % 10000}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
