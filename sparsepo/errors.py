"""One error, printed once, with our message as the last line.

A command's user mistakes (bad config key, missing file, malformed data row, unreachable model) are raised as
ordinary exceptions with a message that names the file, row and field or the key; :func:`run_cli` prints
that message alone, with no traceback, and exits 2. A failure inside Ray Train workers arrives wrapped
(``WorkerGroupError``: one exception per failed worker); the root cause's message is printed last, once.
``SPARSEPO_VERBOSE=1`` (``--verbose``) prints the full traceback instead.
"""

from __future__ import annotations

import difflib
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, OSError, KeyError, ImportError)


def root_cause(err: BaseException) -> BaseException:
    """The exception a user can act on: a Train worker's own error rather than Ray's wrapper, followed through
    ``__cause__`` chains."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        failures = getattr(err, "worker_failures", None)
        inner = getattr(err, "controller_failure", None)
        if failures:
            err = failures[min(failures)]
        elif inner is not None:
            err = inner
        elif getattr(err, "cause", None) is not None and isinstance(err.cause, BaseException):  # RayTaskError
            err = err.cause
        else:
            break
    return err


def message(err: BaseException) -> str:
    """``Type: message`` for an unexpected error, the message alone for a user error (KeyError unquoted)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return text if isinstance(err, USER_ERRORS) else f"{type(err).__name__}: {text}"


def run_cli(command: Callable[[Any], int], args: Any) -> int:
    """Run ``command(args)``; on an error print one ``sparsepo: error: ...`` line to stderr and return 2."""
    from sparsepo.logs import verbose

    try:
        return command(args)
    except KeyboardInterrupt:
        print("sparsepo: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place errors become an exit status
        cause = root_cause(err)
        if verbose():
            traceback.print_exception(cause)
        sys.stdout.flush()
        print(f"sparsepo: error: {message(cause)}", file=sys.stderr, flush=True)
        return 2


def suggest(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""``: the one spelling of every did-you-mean."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
