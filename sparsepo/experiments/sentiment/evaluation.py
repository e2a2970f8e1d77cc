"""Sentiment evaluation outside the training loop: the reference (step-0) point and saved checkpoints.

Both run :class:`sparsepo.evaluation.sentiment.SentimentEvaluator` with the experiment's evaluator arguments (same
prompts, sampling seed and estimator as the in-training path), as Ray tasks, so that on a cluster they run on
their own GPUs while (or after) the trials train:

- :func:`evaluate_reference`: the reference policy sampled and scored once per experiment. Its KL to itself is
  computed like any other point's and is exactly 0 (both forwards are the same model on the same tokens).
- :class:`CheckpointEvaluations` (``eval_mode="checkpoints"``): a Tune callback that submits one evaluation task
  per checkpoint as soon as a trial has persisted it, so evaluation runs beside training wherever the cluster
  has room (its own GPUs; on a CPU machine the tasks wait for the cores the trials hold), then
  :func:`evaluate_checkpoints` covers whatever the callback did not see (checkpoints of a resumed sweep's earlier
  session). Checkpoints are loaded from the run storage and sampled by ``backend``: ``hf`` (the in-training
  path's generator: identical points) or ``vllm`` (fast generation for the full IMDB test prompts; KL is still
  measured by the HF forward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sparsepo.evaluation.sentiment import METRICS, PER_PROMPT_KEY

EVAL_COLUMNS = [*(f"eval/{m}" for m in METRICS), PER_PROMPT_KEY]


def _evaluate(policy_path: str, evaluator_args: dict[str, Any], backend: str, is_reference: bool) -> dict[str, Any]:
    """Metrics of the policy saved at ``policy_path`` (a Hugging Face folder or offline alias)."""
    from sparsepo.evaluation.sentiment import SentimentEvaluator, eval_metrics
    from sparsepo.generation import make_generator
    from sparsepo.training.models import load_causal_lm, load_tokenizer

    evaluator = SentimentEvaluator(**evaluator_args)
    tokenizer = load_tokenizer(policy_path)
    policy = load_causal_lm(policy_path).eval()
    generator = None if backend == "hf" else make_generator(backend, policy_path)
    try:
        samples = evaluator.samples(policy, policy if is_reference else None, tokenizer, generator)
    finally:
        if generator is not None:
            generator.close()
    return eval_metrics(samples)


def _task(fn: Any, use_gpu: bool, num_cpus: float = 1):  # noqa: ANN202 - a Ray remote function
    """``fn`` as a Ray task of ``num_cpus`` CPUs, or one GPU (the evaluation's model, generator and scorer share
    it); on a CPU the task computes with as many torch threads as CPUs granted."""
    import ray

    def granted(*args: Any) -> Any:
        from sparsepo.training.hardware import use_granted_cpus

        use_granted_cpus()
        return fn(*args)

    # retry_exceptions: an evaluation that fails (a storage read cut short, a node lost) is tried once more
    remote = ray.remote(num_cpus=num_cpus, num_gpus=1 if use_gpu else 0, max_retries=1, retry_exceptions=True)(granted)
    return remote.options(name=fn.__name__)  # as Ray's State API and dashboard list it


def evaluate_reference(ref: str, evaluator_args: dict[str, Any], *, backend: str = "hf",
                       use_gpu: bool = False) -> dict[str, Any]:
    """The reference policy's ``eval/*`` metrics and per-prompt values (:data:`PER_PROMPT_KEY`). It runs before
    the sweep, alone: on a CPU cluster it takes every CPU of the largest node."""
    import ray

    cpus = 1 if use_gpu else max(1, *(int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]))
    return ray.get(_task(_evaluate, use_gpu, cpus).remote(ref, evaluator_args, backend, True))


def _evaluate_checkpoint(path: str, evaluator_args: dict[str, Any], backend: str) -> dict[str, Any]:
    from ray.train import Checkpoint

    from sparsepo.training.checkpoint import POLICY_DIR

    with Checkpoint(path).as_directory() as d:  # a local folder as is; a URI is downloaded first
        return _evaluate(str(Path(d) / POLICY_DIR), evaluator_args, backend, False)


def evaluate_checkpoints(
    trial_paths: dict[str, str], evaluator_args: dict[str, Any], *, backend: str = "hf", use_gpu: bool = False,
    failed: list[dict[str, Any]] | None = None, skip: set[str] = frozenset(),
) -> pd.DataFrame:
    """Evaluate every checkpoint of every trial (``trial_id -> trial folder``) in parallel Ray tasks.

    Returns one row per checkpoint: ``trial_id``, ``step`` and the evaluator's metrics (:data:`EVAL_COLUMNS`).
    A checkpoint whose evaluation still fails after its retry has no row; it is appended to ``failed``
    (``trial_id``, ``step``, ``path``, ``error``) and every other row is kept. Checkpoints whose URI is in
    ``skip`` are not evaluated.
    """
    from sparsepo.training.checkpoint import complete_checkpoints

    task = _task(_evaluate_checkpoint, use_gpu)
    keys, refs = [], []
    for trial_id, trial_path in trial_paths.items():
        for step, path in complete_checkpoints(f"{trial_path}/train"):
            if path.rstrip("/") in skip:
                continue
            keys.append({"trial_id": trial_id, "step": step, "path": path})
            refs.append(task.remote(path, evaluator_args, backend))
    return _gather(keys, refs, failed if failed is not None else [])


def _gather(keys: list[dict[str, Any]], refs: list[Any], failed: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows ``key + metrics`` of the tasks that succeeded; the others' keys with their error go to ``failed``."""
    import ray

    rows = []
    for key, ref in zip(keys, refs, strict=True):
        try:
            rows.append({**key, **ray.get(ref)})
        except (ray.exceptions.RayError, OSError) as err:  # one lost point must not discard the others
            failed.append({**key, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"})
    return pd.DataFrame(rows, columns=["trial_id", "step", "path", *EVAL_COLUMNS]).drop(columns="path")


def checkpoint_uri(path: str, storage: str) -> str:
    """A checkpoint path as Tune reports it (inside the storage's filesystem: ``bucket/runs/...`` for
    ``s3://bucket/runs``) as a URI that ``Checkpoint`` and pyarrow can open again."""
    if "://" in path or "://" not in storage:
        return path
    return storage.split("://", 1)[0] + "://" + path.lstrip("/")


def _tune_callback_base() -> type:
    from ray.tune import Callback

    return Callback


class CheckpointEvaluations(_tune_callback_base()):
    """Evaluates every checkpoint while the sweep runs: one Ray task per checkpoint, submitted from the driver
    when the trial's result announces it (Ray Train adds ``checkpoint_path`` once the checkpoint is persisted).

    ``storage`` is the sweep's storage root: on object storage the reported path lacks its scheme, which is put
    back. Tune pickles its callbacks with the experiment; a copy restored from there holds no tasks (see
    ``__getstate__``), and a resumed sweep attaches the driver's fresh instance instead (``sparsepo.sweeps.tuning``).
    """

    def __init__(self, evaluator_args: dict[str, Any], *, backend: str = "hf", use_gpu: bool = False,
                 storage: str = "") -> None:
        self._args, self._backend, self._storage = evaluator_args, backend, storage
        self._use_gpu = use_gpu
        self._keys: list[dict[str, Any]] = []
        self._refs: list[Any] = []
        self.failed: list[dict[str, Any]] = []  # checkpoints whose evaluation failed after its retry
        self.after = 0  # checkpoints evaluated after the sweep (those the callback did not see)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_keys": [], "_refs": [], "failed": [], "after": 0}  # task handles die with the session

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

        path = result.get(CHECKPOINT_PATH_KEY)
        if path and "step" in result:
            uri = checkpoint_uri(path, self._storage)
            self._keys.append({"trial_id": trial.trial_id, "step": int(result["step"]), "path": uri})
            self._refs.append(_task(_evaluate_checkpoint, self._use_gpu).remote(uri, self._args, self._backend))

    @property
    def submitted(self) -> int:
        return len(self._refs)

    def results(self, trial_paths: dict[str, str]) -> pd.DataFrame:
        """Every checkpoint's row (as :func:`evaluate_checkpoints`): the tasks submitted during the sweep, then
        tasks for the checkpoints of ``trial_paths`` they did not cover; failures are listed in ``failed``."""
        done = _gather(self._keys, self._refs, self.failed)
        seen = {k["path"].rstrip("/") for k in self._keys}
        more = evaluate_checkpoints(trial_paths, self._args, backend=self._backend, use_gpu=self._use_gpu,
                                    failed=self.failed, skip=seen)
        self.after = len(more) + sum(f["path"].rstrip("/") not in seen for f in self.failed)
        frames = [d for d in (done, more) if not d.empty]
        return pd.concat(frames, ignore_index=True) if frames else done
