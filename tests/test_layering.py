"""The house rules (README "Layout") as a test, by folder: which package may import which, and jobs stay thin.

    jobs/ -> pipeline/{tokenize, train, evaluate} -> pipeline/decode -> vidtok/
    pipeline/{config, storage, inputs, cli, ray_utils} sit beneath them all; train may use evaluate's metrics.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VIDTOK_FORBIDDEN = {"ray", "pyarrow", "decord", "av", "torchcodec", "s3fs", "fsspec", "gcsfs", "boto3", "botocore",
                    "aiobotocore", "pipeline", "jobs"}
# package (under pipeline/) -> pipeline packages it must not import
PIPELINE_ARROWS = {
    "decode": {"tokenize", "train", "evaluate", "cli"},
    "tokenize": {"train", "evaluate"},
    "evaluate": {"tokenize", "train"},
    "train": {"tokenize"},
    "config": {"decode", "tokenize", "train", "evaluate"},
    "storage": {"decode", "tokenize", "train", "evaluate", "inputs", "config"},
    "inputs": {"decode", "tokenize", "train", "evaluate"},
}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, absolute and dotted (relative imports resolved against the file's package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _files(folder: str):
    return sorted((REPO / folder).rglob("*.py"))


def test_layering_vidtok_imports_only_torch_side():
    """No file in vidtok/ imports Ray, Arrow, decoders, cloud SDKs, the pipeline or the jobs."""
    bad = {str(f.relative_to(REPO)): sorted(_top(_imports(f)) & VIDTOK_FORBIDDEN) for f in _files("vidtok")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"vidtok/ must stay pure PyTorch; forbidden imports: {bad}"


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside a function), top-level package names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if n is not f}
    out = set()
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


# The one decode module that may import torch, inside its functions only: the CUDA path (decode.device=cuda) needs
# torchcodec, which needs torch; the CPU path never calls it, so the decode child stays free of torch.
DECODE_TORCH_AT_CALL_TIME = {"pipeline/decode/gpu.py"}


def test_layering_decode_imports_neither_ray_nor_torch():
    """pipeline/decode/** runs in the isolated decode child: no Ray, no torch (~900 MB resident per child)."""
    forbidden = {"ray", "torch", "torchvision", "vidtok"}

    def hits(f: Path) -> list[str]:
        if str(f.relative_to(REPO)) in DECODE_TORCH_AT_CALL_TIME:
            return sorted((_top_level_imports(f) & forbidden) | (_top(_imports(f)) & {"ray", "vidtok"}))
        return sorted(_top(_imports(f)) & forbidden)

    bad = {str(f.relative_to(REPO)): hits(f) for f in _files("pipeline/decode")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"pipeline/decode must import neither ray nor torch: {bad}"


def test_layering_pipeline_packages_depend_downward():
    """tokenize/train/evaluate never import each other's code (train may use evaluate.metrics); shared modules
    import none of them; nothing imports jobs/."""
    bad = {}
    for f in _files("pipeline") + _files("vidtok"):
        names = _imports(f)
        if "jobs" in _top(names):
            bad[str(f.relative_to(REPO))] = "imports jobs"
        rel = f.relative_to(REPO / "pipeline").parts if f.is_relative_to(REPO / "pipeline") else ()
        if not rel:
            continue
        owner = rel[0].removesuffix(".py")
        forbidden = PIPELINE_ARROWS.get(owner, set())
        hit = sorted(n for n in names if n.startswith("pipeline.") and n.split(".")[1] in forbidden)
        if hit:
            bad[str(f.relative_to(REPO))] = hit
    assert not bad, f"layering violated: {bad}"


def test_layering_url_rule_lives_in_storage_only():
    """The local-vs-remote rule (`"://"`) is written in exactly one module: pipeline/storage.py."""
    hits = sorted(str(f.relative_to(REPO)) for f in _files("pipeline") if '"://"' in f.read_text())
    assert hits == ["pipeline/storage.py"], hits


def test_layering_jobs_are_thin():
    """Job entry points stay under 60 lines: parse config, build, run, close."""
    long = {f.name: n for f in sorted((REPO / "jobs").glob("*.py")) if (n := len(f.read_text().splitlines())) >= 60}
    assert not long, f"jobs/ files should be thin (< 60 lines); move logic into pipeline/: {long}"


def test_layering_jobs_edit_no_sys_path():
    """`ray job submit --working-dir .` puts the working dir on PYTHONPATH: no job edits sys.path."""
    bad = [f.name for f in sorted((REPO / "jobs").glob("*.py")) if "sys.path" in f.read_text()]
    assert not bad, bad
