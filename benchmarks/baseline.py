"""The baseline side of a benchmark: a commit's tree exported beside the checkout, so both sides run in one run.

    from baseline import export_tree
    base = export_tree(workdir, "8cd0f11")   # <workdir>/base-8cd0f11, made once (git archive | tar -x)

`git archive` leaves the repository's state (index, work tree, HEAD) alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def export_tree(workdir: Path, ref: str) -> Path:
    """An exported tree of commit ``ref`` under ``workdir`` (reused when it exists)."""
    base = Path(workdir) / f"base-{ref}"
    if not base.exists():
        base.mkdir(parents=True)
        tar = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=tar.stdout, check=True)
    return base
