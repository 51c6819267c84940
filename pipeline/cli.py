"""The one helper every job in `jobs/` runs through: logging, `--help`, config loading, exit codes.

    sys.exit(run_job(TokenizeJobConfig, DEFAULT_YAML, run, __doc__))

* `--help` / `-h` prints the job's docstring and every key with its type, default and comment
  (`pipeline.config.help_text`), without importing Ray or torch and without starting anything.
* Exit codes (the table is `pipeline/errors.py`): a `ConfigError` or `ValueError` raised while loading or validating
  the config (an unknown key, a bad value), a `ConfigError` raised later by the job, and a storage error that names a
  configuration problem (no credentials, access denied, no such bucket, a missing path:
  `pipeline.storage.storage_config_error`) end the process with exit code 2 and one message on stderr that names the
  key and the fix; a `JobError` with its own code (Ray did not start: 4); anything else is a bug: exit 1, one line,
  and the traceback in a file whose path the line gives. `--debug` (or `VIDTOK_DEBUG=1`) prints tracebacks instead.
* Logging is configured once, here, for the whole process (libraries only call `logging.getLogger(__name__)`).

`ray job submit --working-dir .` needs no `sys.path` edit in the jobs: Ray puts the uploaded working directory on
the entrypoint's `PYTHONPATH` (tests/tokenize/test_e2e.py checks that the job imports `pipeline` from there).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import pipeline
from pipeline.config import ConfigError, help_text, load_config, split_args
from pipeline.errors import CONFIG, UNEXPECTED, JobError
from pipeline.storage import storage_config_error

T = TypeVar("T")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run_job(schema: type[T], default_yaml: str | Path | None, main: Callable[[T], int | None], doc: str = "",
            argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: `sys.argv[1:]`) into `schema`, call `main(cfg)`; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(help_text(schema, doc))
        return 0
    debug = "--debug" in args or os.environ.get("VIDTOK_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    configure_logging()
    try:
        path, overrides = split_args(args)
        cfg = load_config(schema, path or default_yaml, overrides)
    except (ConfigError, ValueError) as e:
        return _fail(CONFIG, f"config error: {e}", debug)
    logging.getLogger("pipeline.cli").info("pipeline package: %s", Path(pipeline.__file__).parent)
    try:
        code = main(cfg)
    except ConfigError as e:
        return _fail(CONFIG, f"config error: {e}", debug)
    except JobError as e:
        return _fail(e.exit_code, f"{e.label}: {e}", debug)
    except Exception as e:
        hint = storage_config_error(e)
        if hint is not None:
            return _fail(CONFIG, f"config error: {hint}", debug)
        if debug:
            raise
        fd, where = tempfile.mkstemp(prefix="vidtok-error-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        line = (str(e).strip().splitlines() or [""])[0][:300]
        return _fail(UNEXPECTED, f"error: {type(e).__name__}: {line}\n(an unexpected error: the traceback is in "
                                 f"{where}; run again with --debug to print it)", False)
    return int(code or 0)


def _fail(code: int, message: str, debug: bool) -> int:
    """Print `message` (with the current traceback under `debug`) and return `code`."""
    if debug:
        traceback.print_exc()
    print(message, file=sys.stderr)
    return code
