"""The one helper every job in `jobs/` runs through: logging, `--help`, config loading, exit codes.

    sys.exit(run_job(TokenizeJobConfig, DEFAULT_YAML, run, __doc__))

* `--help` / `-h` prints the job's docstring and every key with its type, default and comment
  (`pipeline.config.help_text`), without importing Ray or torch and without starting anything.
* A `ConfigError` or `ValueError` raised while loading or validating the config (an unknown key, a bad value), or a
  `ConfigError` raised later by the job, ends the process with exit code 2 and the message on stderr: no traceback,
  the message names the key and the fix.
* Logging is configured once, here, for the whole process (libraries only call `logging.getLogger(__name__)`).

`ray job submit --working-dir .` needs no `sys.path` edit in the jobs: Ray puts the uploaded working directory on
the entrypoint's `PYTHONPATH` (tests/tokenize/test_e2e.py checks that the job imports `pipeline` from there).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import pipeline
from pipeline.config import ConfigError, help_text, load_config, split_args

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
    configure_logging()
    try:
        path, overrides = split_args(args)
        cfg = load_config(schema, path or default_yaml, overrides)
    except (ConfigError, ValueError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("pipeline.cli").info("pipeline package: %s", Path(pipeline.__file__).parent)
    try:
        code = main(cfg)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    return int(code or 0)
