"""The ``FACEALIGN_*`` environment variables: read and validated once, here, at the edge of the
command line (the library below takes explicit values).

Only ``click`` and the standard library are imported (``facealign --help`` stays instant).
"""

from __future__ import annotations

import os

import click

from facealign_cli.batch.options import MAX_DASK_TIMEOUT, MAX_PIXELS_LIMIT
from facealign_cli.models.weights import RUNTIMES

#: Environment variables read by the image commands (once, here; see :func:`read_env`).
ENV_VARS = ("FACEALIGN_WEIGHTS", "FACEALIGN_RUNTIME", "FACEALIGN_MAX_PIXELS",
            "FACEALIGN_DASK_TIMEOUT")


def _env_error(name: str, value: str, expected: str) -> click.UsageError:
    return click.UsageError(f"environment variable {name}={value!r} is invalid: expected "
                            f"{expected}")


def env_weights(environ=None) -> str | None:
    """``$FACEALIGN_WEIGHTS`` (None when unset or empty)."""
    environ = os.environ if environ is None else environ
    return environ.get("FACEALIGN_WEIGHTS") or None


def env_runtime(environ=None) -> str | None:
    """``$FACEALIGN_RUNTIME`` (lower-case; None when unset or empty).

    Raises:
        click.UsageError: not one of :data:`RUNTIMES`.
    """
    environ = os.environ if environ is None else environ
    v = environ.get("FACEALIGN_RUNTIME")
    if not v:
        return None
    if v.lower() not in RUNTIMES:
        raise _env_error("FACEALIGN_RUNTIME", v, "one of " + ", ".join(RUNTIMES))
    return v.lower()


def read_env(environ=None) -> dict:
    """The ``FACEALIGN_*`` settings of the image commands, validated: ``weights`` (str or
    None), ``runtime`` (one of :data:`RUNTIMES` or None), ``max_pixels`` (int in
    [1, :data:`MAX_PIXELS_LIMIT`] or None), ``dask_timeout`` (seconds, float in
    (0, :data:`MAX_DASK_TIMEOUT`] or None).

    Raises:
        click.UsageError: a variable is set to an invalid value (the message names it).
    """
    import math

    environ = os.environ if environ is None else environ
    env: dict = {"weights": env_weights(environ), "runtime": env_runtime(environ),
                 "max_pixels": None, "dask_timeout": None}
    v = environ.get("FACEALIGN_MAX_PIXELS")
    if v is not None and v.strip():
        try:
            n = int(v.strip().replace("_", ""))
        except ValueError:
            n = 0
        if not 0 < n <= MAX_PIXELS_LIMIT:
            raise _env_error("FACEALIGN_MAX_PIXELS", v,
                             f"a whole number of pixels > 0 and <= {MAX_PIXELS_LIMIT:.0e}")
        env["max_pixels"] = n
    v = environ.get("FACEALIGN_DASK_TIMEOUT")
    if v is not None and v.strip():
        try:
            t = float(v)
        except ValueError:
            t = math.nan
        if not (math.isfinite(t) and 0 < t <= MAX_DASK_TIMEOUT):
            raise _env_error("FACEALIGN_DASK_TIMEOUT", v, "a number of seconds > 0 and <= "
                             f"{MAX_DASK_TIMEOUT:g}")
        env["dask_timeout"] = t
    return env
