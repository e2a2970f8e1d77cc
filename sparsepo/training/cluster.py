"""What a run needs from a Ray cluster of several nodes beyond what one machine needs.

Ray Train 2.60 keeps one detached ``AutoscalingCoordinator`` actor per cluster, bound (hard node affinity) to the
node of whichever Train controller first asks for it. A sweep's Train controllers run inside Tune trials, so on an
autoscaling cluster the actor lands on a worker node the autoscaler launched; a node that hosts a live actor is
never idle, so that node is never removed and the cluster never scales back down (measured on Ray's fake
multi-node autoscaler: the node stayed up with "Busy workers on node" long after the sweep ended). Creating the
actor from the driver first puts it on the driver's node: the head node under ``ray job submit``.
"""

from __future__ import annotations

import logging

log = logging.getLogger("sparsepo.training.cluster")


def pin_train_coordinator() -> None:
    """Create Ray Train's autoscaling coordinator on this (the driver's) node if it does not exist yet.

    Connects to Ray first if needed (as ``fit()`` would). A no-op on Ray versions without the coordinator.
    """
    import ray

    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import (
            get_or_create_autoscaling_coordinator,
        )
    except ImportError:  # other Ray versions: no coordinator, or elsewhere
        return
    from sparsepo.logs import startup_mark

    if not ray.is_initialized():
        ray.init()
        startup_mark("driver: ray.init done")
    actor = get_or_create_autoscaling_coordinator()
    ray.get(actor.__ray_ready__.remote())
    startup_mark("driver: autoscaling coordinator ready")
    log.debug("Ray Train's autoscaling coordinator runs on the driver's node")
