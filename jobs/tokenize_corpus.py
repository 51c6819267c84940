"""Main job: tokenize a video corpus into Parquet token shards with Ray Data (exactly once, resumable).

    python jobs/tokenize_corpus.py                                   # embedded default: sample corpus, tiny preset
    python jobs/tokenize_corpus.py input=s3://b/videos output=s3://b/tokens preset=vidtok_fsq_causal_488_32768 \\
        checkpoint=/ckpt/vidtok_fsq_causal_488_32768.ckpt tokenizer.max_actors=8
    python jobs/tokenize_corpus.py input=s3://b/videos output=s3://b/tokens dry_run=true   # counts + estimate only
    ray job submit --working-dir . -- python jobs/tokenize_corpus.py input=... output=...

Config: jobs/configs/tokenize_corpus.yaml + key=value overrides. Rerunning the same command resumes an interrupted
run; rerunning a finished one does nothing. Exit codes (pipeline/errors.py): 0 complete (or a limit= run done),
1 unexpected error, 2 configuration (also no credentials, access denied, missing input), 3 incomplete (inputs pending
after transient storage failures: re-run the same command), 4 Ray did not start, 5 broken decode environment on the
node the message names (its inputs left pending: fix or drain it, re-run). Layout: docs/tokenize.md; faults:
docs/operations.md §6.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli import run_job
from pipeline.errors import INCOMPLETE
from pipeline.tokenize.config import TokenizeJobConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "tokenize_corpus.yaml"


def main(cfg: TokenizeJobConfig) -> int:
    if cfg.dry_run:  # list, plan, estimate; no Ray, nothing written
        from pipeline.tokenize.dry_run import dry_run

        print(dry_run(cfg).text())
        return 0
    from pipeline.tokenize.run import run_tokenize, summary_text

    summary = run_tokenize(cfg)  # a broken decode environment raises MachineBroken: exit 5 (pipeline/errors.py)
    if summary.get("nothing_to_do"):
        print(f"nothing to do: {cfg.output} is complete ({summary.get('windows_total', '?')} windows); "
              "new inputs under the same input= would be picked up")
        return 0
    print(summary_text(summary))
    if summary["complete"]:
        return 0
    if summary.get("partial") and not summary.get("inputs_pending") and not summary.get("stopped"):
        print(f"PARTIAL: {summary['partial']} (the limit= you set); _SUCCESS not written. Run the same command "
              "without limit= to complete the output.", file=sys.stderr)
        return 0
    pending = summary["inputs_pending"]
    print(f"INCOMPLETE: {'all unfinished' if pending is None else pending} inputs pending after transient failures "
          f"{summary['pending_by_reason']}" + (f"; the run stopped on: {summary['stopped']}" if summary["stopped"]
                                               else "") + "; _SUCCESS not written. Re-running the same command "
          "retries them.", file=sys.stderr)
    return INCOMPLETE


if __name__ == "__main__":
    sys.exit(run_job(TokenizeJobConfig, DEFAULT_CONFIG, main, __doc__))
