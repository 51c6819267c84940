"""The docs against the repository: every file they point at exists in a clone, and every default they state is the
job schema's.

File references: backticked or plain paths under a top-level folder (`docs/x.md`, `pipeline/decode/probe.py`,
`jobs/configs/*.yaml`, `benchmarks/model_flops.count_flops`), `*.md` names, markdown links and `../` paths, in the
markdown docs and in the comments and docstrings of the packages, jobs, benchmarks and cluster files. A reference
resolves against the repository root or the file's folder and must stay inside the repository; the only outside
names allowed are the spec folder's (`EXTERNAL`), which `docs/spec.md` explains. Issue numbers ("issue 14") mean
nothing to a reader of a clone and are refused too.

Defaults: the sentences the docs use to state one, parsed (`DEFAULT_FORMS`); each named key must be a key of a job
schema (`jobs/*.py` -> `run_job(Schema, ...)`) and the stated value its default there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from pipeline.entrypoints import COMMANDS
from tests.test_cluster_configs import _job_schema

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("benchmarks", "cluster", "docs", "jobs", "pipeline", "tests", "vidtok")
# Files of the spec folder that lives beside the repository, not in it (docs/spec.md says what they hold).
EXTERNAL = {"ARCHITECTURE.md", "checkpoints.md", "../shared/vidtok-spec"}

DOCS = sorted({REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("cluster/**/*.md"),
               *REPO.glob("benchmarks/**/*.md"), *REPO.glob("tests/**/*.md")})
CODE = sorted(p for d in ("pipeline", "vidtok", "jobs", "benchmarks", "cluster") for p in (REPO / d).rglob("*")
              if p.is_file() and (p.suffix in (".py", ".yaml", ".yml") or p.name == "Dockerfile"))

_SEG = r"(?:\{[^{}\n]*\}|[\w./*-])*(?:\{[^{}\n]*\}|[\w*-])"  # path characters and {a, b} groups
_PATH = re.compile(r"(?<![\w./$-])(\.\./%s|(?:%s)/%s|[\w-]+\.md)(?![\w/])" % (_SEG, "|".join(ROOTS), _SEG))
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_ISSUE = re.compile(r"\b[Ii]ssues?[ -]#?\d|\bthe (?:\w+ )?issue(?:'s)?\b")


def _expand(ref: str) -> list[str]:
    """`jobs/train_stage{1,2}.py` -> both names; a group without a comma (`jobs/{job}.py`, an f-string
    field) -> a glob."""
    m = re.search(r"\{([^{}]*)\}", ref)
    if not m:
        return [ref]
    parts = [p.strip() for p in m.group(1).split(",")] if "," in m.group(1) else ["*"]
    return [r for part in parts for r in _expand(ref[:m.start()] + part + ref[m.end():])]


def _resolves(ref: str, where: Path, repo: Path) -> bool:
    """A path, glob, module path (`pkg/mod` or `pkg/mod.attr`) or folder, from the repo root or the file's folder."""
    ref = ref.split("#", 1)[0].rstrip(".")
    for base in (repo, where.parent):
        target = (base / ref).resolve()
        if not target.is_relative_to(repo.resolve()):
            continue
        if "*" in ref and list(base.glob(ref)):
            return True
        if target.exists() or (base / f"{ref}.py").exists():
            return True
        module, _, attr = ref.partition(".")  # pipeline/mod.func: the module exists and defines the name
        if attr and "/" in module and (base / f"{module}.py").exists():
            return re.search(rf"\b{re.escape(attr.split('.')[0])}\b", (base / f"{module}.py").read_text()) is not None
    return False


def reference_problems(text: str, where: Path, repo: Path = REPO) -> list[str]:
    """`line: problem` for each reference in `text` (a file at `where`) that a clone of `repo` cannot follow."""
    problems = []
    for i, line in enumerate(text.splitlines(), 1):
        refs = _PATH.findall(line) + [t for t in _LINK.findall(line) if not re.match(r"[a-z]+:|#", t)]
        for ref in refs:
            if ref in EXTERNAL or any(ref.startswith(e + "/") for e in EXTERNAL):
                continue
            missing = [r for r in _expand(ref) if not _resolves(r, where, repo)]
            if missing:
                problems.append(f"{i}: {ref!r} is not a file of the repository")
        for m in _ISSUE.finditer(line):
            if not re.search(r"\w/\w+ $", line[:m.start()]):  # "dmlc/decord issues #269" names its tracker
                problems.append(f"{i}: issue reference {line[max(0, m.start() - 20):m.end() + 10]!r}")
    return problems


@pytest.mark.parametrize("path", DOCS + CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_reference_only_files_in_the_repository(path):
    """Every file, folder, link or module path a doc or comment names exists in the repository."""
    problems = reference_problems(path.read_text(errors="replace"), path)
    assert not problems, f"{path.relative_to(REPO)}:\n  " + "\n  ".join(problems)


def test_external_names_are_explained_in_docs_spec():
    """Each allowed outside name is described in docs/spec.md, so a reader of a clone knows what it is."""
    spec = (REPO / "docs" / "spec.md").read_text()
    assert not [e for e in EXTERNAL if e not in spec]


def test_reference_checker_catches_missing_outside_and_issue_refs(tmp_path):
    """The checker flags a missing path, a path leaving the repository and an issue number; it passes real ones."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "mod.py").write_text("def func(): ...")
    doc = tmp_path / "docs" / "b.md"
    ok = ("See `docs/a.md`, [a](a.md), pipeline/mod.py, `pipeline/mod.func` and `pipeline/m{o,o}d.py`; "
          "dmlc/decord issues #269.")
    assert reference_problems(ok, doc, tmp_path) == []
    bad = "See `docs/missing.md`.\nAlso ../../etc/passwd and DESIGN.md.\nDone in issue 14.\n[x](nope/x.md)"
    found = " ".join(reference_problems(bad, doc, tmp_path))
    for name in ("docs/missing.md", "../../etc/passwd", "DESIGN.md", "issue 14", "nope/x.md"):
        assert name in found, (name, found)


# ---------------------------------------------------------------------------------------------------- defaults
# The forms the docs use to state a default; each yields (key, value text). Write new statements in one of them.
DEFAULT_FORMS = [
    re.compile(r"`(?P<key>[a-z_][\w.]*)=(?P<value>[^`\s]+)`\s*\(default\)"),  # `key=value` (default)
    re.compile(r"\bdefault,? `(?P<key>[a-z_][\w.]*)=(?P<value>[^`\s]+)`"),  # the default `key=value`
    # `key` ... (default 30)
    re.compile(r"`(?P<key>[a-z_][\w.]*)`[^`()]{0,40}?\(default (?P<value>[^;,)`][^;,)]*)[;,)]"),
    re.compile(r"`(?P<key>[a-z_][\w.]*)`, (?P<value>\S+) by default"),  # `key`, 2048 by default
    re.compile(r"`(?P<key>[a-z_][\w.]*)=[^`\s]*`[;,]? the default `(?P<value>[^`=\s]+)`"),  # `key=1`; the default `-1`
]
_KEY_LIST = re.compile(r"Keys \(`(?P<prefix>[a-z_][\w.]*)\.\*`, defaults\):(?P<body>.*?)\.(?:\s|$)", re.S)
_KEY_ITEM = re.compile(r"`(?P<key>\w+): (?P<value>[^`]+)`")  # Keys (`retry.*`, defaults): `attempts: 6`, ...
DEFAULT_DOCS = sorted({REPO / "README.md", *REPO.glob("docs/*.md"), REPO / "cluster" / "README.md"})


def documented_defaults(text: str) -> list[tuple[str, object]]:
    """(dotted key, value) for every default statement in a doc's text."""
    found = [(m["key"], m["value"]) for form in DEFAULT_FORMS for m in form.finditer(text)]
    for m in _KEY_LIST.finditer(text):
        found += [(f"{m['prefix']}.{i['key']}", i["value"]) for i in _KEY_ITEM.finditer(m["body"])]
    return [(k, yaml.safe_load(v.strip())) for k, v in found]


_UNSET = object()


def _lookup(tree, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _UNSET
        tree = tree[part]
    return tree


def _job_defaults() -> dict[str, dict]:
    """{job: the schema's defaults as plain data} for every job of `pipeline.entrypoints.COMMANDS`."""
    return {job: OmegaConf.to_container(OmegaConf.structured(_job_schema(job)), throw_on_missing=False)
            for job in sorted(COMMANDS)}


def default_problems(statements: list[tuple[str, object]], defaults: dict[str, dict]) -> list[str]:
    """A problem per statement whose key no job has, or whose value differs from a job schema's default."""
    problems = []
    for key, value in statements:
        found = {job: v for job, d in defaults.items() if (v := _lookup(d, key)) is not _UNSET}
        if not found:
            problems.append(f"{key}: no job schema has this key")
        elif wrong := {job: v for job, v in found.items() if v != value}:
            problems.append(f"{key}: documented default {value!r}, schema default {wrong}")
    return problems


def test_documented_defaults_match_the_job_schemas():
    """Each default statement of the README, docs/ and the cluster guide names a job key and states its default."""
    defaults = _job_defaults()
    problems, count = [], 0
    for doc in DEFAULT_DOCS:
        statements = documented_defaults(doc.read_text())
        count += len(statements)
        problems += [f"{doc.relative_to(REPO)}: {p}" for p in default_problems(statements, defaults)]
    assert count >= 10, f"only {count} default statements found: did the forms in DEFAULT_FORMS change?"
    assert not problems, "\n".join(problems)


def test_default_checker_catches_a_wrong_default_and_an_unknown_key():
    """A stated default that differs from the schema, or a key no job has, is reported; a right one is not."""
    text = ("`tokenizer.num_gpus=-1` (default); the default `tokenizer.num_gpus=null`; `shards.shard_rows`, 2048 by "
            "default; `retry.decoder_attempts` (default 2); `no.such_key` (default 3); (`tokenizer.num_gpus=1`; the "
            "default `-1` means ...).")  # the last one: the drift cluster/README.md once had
    statements = documented_defaults(text)
    assert len(statements) == 6 and statements.count(("tokenizer.num_gpus", -1)) == 2, statements
    problems = default_problems(statements, _job_defaults())
    assert len(problems) == 3, problems
    assert sum("tokenizer.num_gpus: documented default -1" in p for p in problems) == 2
    assert any("no.such_key: no job schema has this key" in p for p in problems)
