"""Quiet, readable logs: our progress lines visible, Ray's per-step internals and known-harmless noise off.

By default (``SPARSEPO_VERBOSE`` unset) the driver hides Ray's token-auth notice, and Train workers hide Ray
Train's per-step ``Reporting training result N: TrainingReport(...)`` line and transformers' progress bars.
``SPARSEPO_VERBOSE=1`` (``--verbose`` on the CLI) shows everything. Lines that Ray's C++ core writes (such as
the controller's one-off PreemptionWatcher note) cannot be filtered one by one: ``RAY_BACKEND_LOG_LEVEL``
would hide them only by making every Ray process announce its log level instead.

``SPARSEPO_STARTUP_TRACE=<file>`` records the start-up phases of a training run (:func:`startup_mark`).
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


STARTUP_TRACE_ENV = "SPARSEPO_STARTUP_TRACE"  # a file: each start-up phase appends one line
_STARTUP_T0_ENV = "SPARSEPO_STARTUP_T0"  # the origin, set by the first marking process, inherited by Ray's


def startup_mark(phase: str) -> None:
    """With ``SPARSEPO_STARTUP_TRACE=<file>``: append ``<seconds>\\t<cpu seconds>\\t<pid>\\t<phase>`` to that file:
    wall seconds since the first marking process started (the driver; local Ray workers inherit the origin through
    the environment, being started after it) and this process's CPU seconds so far (all its threads: less
    sensitive than wall time to other work on the machine). A no-op (one dictionary look-up) otherwise."""
    path = os.environ.get(STARTUP_TRACE_ENV)
    if not path:
        return
    import time

    origin = os.environ.get(_STARTUP_T0_ENV)
    if not origin:
        import psutil  # a Ray dependency

        origin = os.environ[_STARTUP_T0_ENV] = repr(psutil.Process().create_time())
    with open(path, "a") as f:
        f.write(f"{time.time() - float(origin):.3f}\t{time.process_time():.3f}\t{os.getpid()}\t{phase}\n")
