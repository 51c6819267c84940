"""The house rules of STYLE.md as a test: `vidtok/` is pure PyTorch, pure `pipeline/` helpers need no Ray, jobs are thin."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VIDTOK_FORBIDDEN = {"ray", "pyarrow", "decord", "av", "s3fs", "fsspec", "boto3", "botocore", "pipeline", "jobs"}
# pipeline helpers that must unit-test without a cluster
PURE_PIPELINE = ["decode.py", "io.py", "probe.py", "resample.py", "spatial.py", "windows.py", "status.py",
                 "backends.py", "isolate.py",
                 "synth.py", "schema.py", "listing.py", "config.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_vidtok_imports_only_torch_side():
    """No file in vidtok/ imports Ray, storage, decoders or the pipeline."""
    bad = {}
    for f in sorted((REPO / "vidtok").rglob("*.py")):
        hit = _imports(f) & VIDTOK_FORBIDDEN
        if hit:
            bad[str(f.relative_to(REPO))] = sorted(hit)
    assert not bad, f"vidtok/ must stay pure PyTorch; forbidden imports: {bad}"


def test_pure_pipeline_helpers_do_not_import_ray():
    """Decode, schema, listing and config helpers in pipeline/ work without Ray."""
    bad = {}
    for name in PURE_PIPELINE:
        f = REPO / "pipeline" / name
        if f.exists() and "ray" in _imports(f):
            bad[name] = "ray"
    assert not bad, f"pure helpers import ray: {bad}"


def test_jobs_are_thin():
    """Job entry points stay a screenful: parse config, build, run, close."""
    long = {}
    for f in sorted((REPO / "jobs").glob("*.py")):
        n = len(f.read_text().splitlines())
        if n > 120:
            long[f.name] = n
    assert not long, f"jobs/ files should be thin (<=120 lines); move logic into pipeline/: {long}"
