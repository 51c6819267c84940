"""Does a change keep the tokens? The tokenize job on one generated corpus with a baseline commit's code and with
this checkout's, in one run: same `clip_id`s and the same token bytes, or the differences.

    python benchmarks/same_tokens.py --baseline 280991b [--clips 6 --seconds 20] [--workdir /tmp/same_tokens]

A refactor must print `same clip_ids and token bytes: True`; a change that means to alter tokens says how many differ.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from baseline import REPO, export_tree


def token_rows(folder: Path) -> dict[str, str]:
    """clip_id -> sha1 of its tokens, over every token shard of an output."""
    import pyarrow.parquet as pq

    table = pq.ParquetDataset(sorted(glob.glob(str(folder / "tokens" / "*.parquet")))).read(columns=["clip_id", "tokens"])
    return {c: hashlib.sha1(repr(t).encode()).hexdigest()
            for c, t in zip(table.column("clip_id").to_pylist(), table.column("tokens").to_pylist())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="commit whose code gives the reference tokens")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workdir", default="/tmp/same_tokens")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from pipeline.decode.synth import make_sample_corpus

    corpus = make_sample_corpus(work / "corpus", args.clips, args.seconds, 24.0, 160, 120)
    rows = {}
    for side, root in (("baseline", export_tree(work, args.baseline)), ("this checkout", REPO)):
        out = work / f"out-{side.replace(' ', '_')}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        r = subprocess.run([sys.executable, "jobs/tokenize_corpus.py", f"input={corpus}", f"output={out}",
                            "ray.num_cpus=2"], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{side} run failed (exit {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        rows[side] = token_rows(out)
    a, b = rows["baseline"], rows["this checkout"]
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"windows: baseline {len(a)}, this checkout {len(b)}; same clip_ids and token bytes: {not differ}")
    if differ:
        print(f"{len(differ)} differ, e.g. {differ[:5]}")


if __name__ == "__main__":
    main()
