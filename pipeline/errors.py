"""How a job ends: the exit codes every `jobs/*.py` returns, and the errors that carry them (one table, here).

| code | meaning                                                            | what to do                                 |
|------|--------------------------------------------------------------------|--------------------------------------------|
| 0    | done (a `limit=` run: done with what it was asked, output partial) | nothing                                    |
| 1    | an unexpected error (a bug): one line, the traceback in a file     | report it with the file; `--debug` prints it |
| 2    | configuration: unknown key or preset, bad value, missing input,    | fix what the message names, run again      |
|      | no credentials, access denied, no such bucket, a foreign output   |                                            |
| 3    | incomplete: transient failures left inputs pending                 | run the same command again (later)         |
| 4    | Ray did not start (a private local Ray) or cannot be reached       | what the message says, then run again      |
| 5    | broken environment: a node's failures point at the machine         | fix the node's environment, run again      |

`pipeline.cli.run_job` maps exceptions to codes: `ConfigError` (and a storage error that names a configuration
problem, `pipeline.storage.storage_config_error`) -> 2, `JobError` subclasses -> their `exit_code`, anything else ->
1. Messages are one line and say the next step; tracebacks only under `--debug` (or `VIDTOK_DEBUG=1`).
"""

from __future__ import annotations

OK, UNEXPECTED, CONFIG, INCOMPLETE, RAY_START, BROKEN_ENV = 0, 1, 2, 3, 4, 5


class JobError(Exception):
    """An error that ends a job with its own exit code and a message that says the next step (no traceback)."""

    exit_code = UNEXPECTED
    label = "error"  # the message's first word on the console


class RayStartError(JobError):
    """A private local Ray did not start, or the cluster at `ray.address` cannot be reached."""

    exit_code = RAY_START
