"""Quiet, readable logs: our progress lines visible, Ray's per-step internals and known-harmless noise off.

By default (``SPARSEPO_VERBOSE`` unset) the driver hides Ray's token-auth notice, and Train workers hide Ray
Train's per-step ``Reporting training result N: TrainingReport(...)`` line and transformers' progress bars.
``SPARSEPO_VERBOSE=1`` (``--verbose`` on the CLI) shows everything. Lines that Ray's C++ core writes (such as
the controller's one-off PreemptionWatcher note) cannot be filtered one by one: ``RAY_BACKEND_LOG_LEVEL``
would hide them only by making every Ray process announce its log level instead.
"""

from __future__ import annotations

import logging
import os

VERBOSE_ENV = "SPARSEPO_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


def quiet_driver() -> None:
    """Call before ``ray.init``: the settings reach the local Ray processes through the environment."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if verbose():
        return
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def quiet_worker() -> None:
    """Call at the start of a Ray Train worker's loop."""
    logging.getLogger("sparsepo").setLevel(logging.INFO)
    if verbose():
        return
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # Ray names this logger after its file
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
