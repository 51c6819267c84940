"""Checks of `cluster/`: the Ray launcher YAML, the KubeRay manifests, the image, and the operator's guide.

Nothing here talks to a cloud. The launcher YAML goes through the JSON schema shipped inside the installed `ray`
package and the same preparation `ray up` runs before it calls AWS; the KubeRay manifests are checked for the fields
their CRDs require; every job command in `cluster/README.md` and in the RayJob entrypoints must name an existing job
file and only keys of that job's schema, so the guide cannot drift from the code.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from pipeline.config import describe, load_config
from pipeline.entrypoints import COMMANDS, default_yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws-a100.yaml"
KUBERAY = CLUSTER / "kuberay"
GUIDE = CLUSTER / "README.md"
DOCKERFILE = CLUSTER / "Dockerfile"
JOBS_WE_DOCUMENT = {"tokenize_corpus", "train_stage1", "train_stage2"}


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def _ray_schema() -> dict:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _kuberay_docs() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def _image_tag(image: str) -> tuple[str, str]:
    """`rayproject/ray:2.60.0-py311-gpu` -> ('2.60.0', 'py311')."""
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py\d+)-(?:gpu|cpu|cu\d+)", image)
    assert m, f"image {image!r} is not a versioned rayproject/ray:<ray>-py<XY>-<gpu|cpu|cuXXX> tag"
    return m.group(1), m.group(2)


# ----------------------------------------------------------------------------------------------- launcher YAML


def test_launcher_validates_against_ray_schema():
    """The launcher YAML passes the schema in the installed ray package and `ray up`'s own preparation."""
    config = _launcher()
    jsonschema.validate(config, _ray_schema())
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before it contacts AWS
    validate_config(prepared)
    assert prepared["head_node_type"] == "ray.head"


def test_launcher_schema_check_rejects_unknown_keys():
    """The schema check is live: a misspelt node-type key is refused (so the test above can fail)."""
    config = _launcher()
    config["available_node_types"]["a100"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(config, _ray_schema())


def test_launcher_every_key_has_a_comment():
    """Every mapping key carries a comment on its own line or on the line(s) just above it."""
    lines = LAUNCHER.read_text().splitlines()
    uncommented = []

    def walk(node):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                row = key.start_mark.line
                same_line = "#" in lines[row]
                above = row > 0 and lines[row - 1].strip().startswith("#")
                # Keys of a flow mapping written on one line share that line's comment.
                if not (same_line or above or key.start_mark.line == node.start_mark.line and node.flow_style):
                    uncommented.append(f"line {row + 1}: {key.value}")
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    walk(yaml.compose(LAUNCHER.read_text()))
    assert not uncommented, "keys without a comment:\n" + "\n".join(uncommented)


def test_launcher_pools_have_the_documented_shape():
    """Head takes no work; A100 pool is on-demand p4d from 0; decode pool is spot CPU from 0; idle nodes go away."""
    c = _launcher()
    types = c["available_node_types"]
    head = types[c["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    a100, cpu = types["a100"], types["cpu_decode"]
    assert a100["node_config"]["InstanceType"] in ("p4d.24xlarge", "p4de.24xlarge")
    assert a100["resources"]["GPU"] == 8
    assert "InstanceMarketOptions" not in a100["node_config"], "the A100 pool must be on-demand"
    assert cpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert cpu["resources"].get("GPU", 0) == 0
    for name, t in (("a100", a100), ("cpu_decode", cpu)):
        assert t["min_workers"] == 0, f"{name} must scale from 0"
        assert 0 < t["max_workers"] <= c["max_workers"]
        assert t["idle_timeout_s"] > 0
    assert c["idle_timeout_minutes"] > 0
    assert c["provider"]["cache_stopped_nodes"] is False, "idle nodes must be terminated, not stopped"
    assert sum(t["max_workers"] for n, t in types.items() if n != c["head_node_type"]) <= c["max_workers"]


def test_launcher_container_limits_and_auth():
    """Every container gets a raised open-file limit, token auth, and /dev/shm sized per pool."""
    c = _launcher()
    run_options = " ".join(c["docker"]["run_options"])
    assert re.search(r"--ulimit nofile=(\d+):(\d+)", run_options)
    assert int(re.search(r"nofile=(\d+)", run_options).group(1)) >= 65536
    assert "RAY_AUTH_MODE=token" in run_options
    assert any("--shm-size" in o for o in c["docker"]["head_run_options"])
    for name in ("a100", "cpu_decode"):
        assert any("--shm-size" in o for o in c["available_node_types"][name]["docker"]["worker_run_options"]), name
    assert c["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token", "the auth token must reach every node"
    assert any("ffmpeg" in cmd for cmd in c["setup_commands"])
    assert any("pip install" in cmd and "/home/ray/vidtok-pipeline" in cmd for cmd in c["setup_commands"])


def test_launcher_placeholders_are_marked_account():
    """Every placeholder (account id, bucket) sits under an `ACCOUNT` comment, so users know what to edit."""
    lines = LAUNCHER.read_text().splitlines()
    unmarked = [i + 1 for i, line in enumerate(lines)
                if re.search(r"123456789012|YOUR-BUCKET", line) and not line.lstrip().startswith("#")
                and not any("ACCOUNT" in prev for prev in lines[max(0, i - 4):i + 1])]
    assert not unmarked, f"placeholders without an ACCOUNT comment on lines {unmarked}"


def test_launcher_file_mounts_exist_in_repo():
    """Every repository path the launcher syncs exists (it runs from the repo root)."""
    mounts = _launcher()["file_mounts"]
    local = [p for p in mounts.values() if not p.startswith("~")]
    assert local
    missing = [p for p in local if not (REPO / p).exists()]
    assert not missing, f"file_mounts name paths that do not exist in the repo: {missing}"


def test_images_match_installed_ray_and_python():
    """Launcher images, the Dockerfile base and KubeRay's rayVersion all name the installed Ray and one Python."""
    c = _launcher()
    images = [c["docker"]["image"], c["docker"]["head_image"]]
    images += [t["docker"]["worker_image"] for t in c["available_node_types"].values()
               if "worker_image" in t.get("docker", {})]
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert base, "cluster/Dockerfile has no FROM line"
    images.append(base.group(1))
    tags = {_image_tag(i) for i in images}
    assert {v for v, _ in tags} == {ray.__version__}, f"images {images} vs installed ray {ray.__version__}"
    py = {p for _, p in tags}
    assert len(py) == 1, f"images mix Python versions: {images}"
    project = (REPO / "pyproject.toml").read_text()
    minimum = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', project)
    assert int(py.pop()[2:]) >= int(minimum.group(1) + minimum.group(2))
    for path, doc in _kuberay_docs():
        spec = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"] == "RayJob" else doc["spec"]
        if "rayVersion" in spec:
            assert spec["rayVersion"] == ray.__version__, path.name


# ----------------------------------------------------------------------------------------------- KubeRay manifests

# Required by the ray.io/v1 CRDs (ray-operator/apis/ray/v1/raycluster_types.go: fields without `omitempty`), plus the
# Kubernetes core requirement that a pod has containers and each container a name and an image.
RAYCLUSTER_REQUIRED = {"spec": ["headGroupSpec"], "headGroupSpec": ["rayStartParams", "template"],
                       "workerGroupSpec": ["groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"]}


def _check_pod_template(template: dict, where: str) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers, f"{where}: no containers"
    for c in containers:
        assert c.get("name") and c.get("image"), f"{where}: a container needs name and image"
    return containers


def _check_raycluster_spec(spec: dict, where: str) -> None:
    for key in RAYCLUSTER_REQUIRED["spec"]:
        assert key in spec, f"{where}: spec.{key} missing"
    head = spec["headGroupSpec"]
    for key in RAYCLUSTER_REQUIRED["headGroupSpec"]:
        assert key in head, f"{where}: headGroupSpec.{key} missing"
    _check_pod_template(head["template"], f"{where} head")
    for group in spec.get("workerGroupSpecs", []):
        for key in RAYCLUSTER_REQUIRED["workerGroupSpec"]:
            assert key in group, f"{where}: workerGroupSpecs[{group.get('groupName')}].{key} missing"
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
        _check_pod_template(group["template"], f"{where} {group['groupName']}")


def test_kuberay_manifests_carry_crd_required_fields():
    """Each manifest parses, is a ray.io/v1 RayCluster or RayJob, and has the fields its CRD requires."""
    docs = _kuberay_docs()
    kinds = [d["kind"] for _, d in docs]
    assert kinds.count("RayCluster") >= 1 and kinds.count("RayJob") >= 3, kinds
    clusters = {d["metadata"]["name"] for _, d in docs if d["kind"] == "RayCluster"}
    for path, d in docs:
        where = f"{path.name} ({d.get('kind')})"
        assert d["apiVersion"] == "ray.io/v1", where
        assert d["metadata"]["name"], where
        if d["kind"] == "RayCluster":
            _check_raycluster_spec(d["spec"], where)
        elif d["kind"] == "RayJob":
            spec = d["spec"]
            assert spec.get("entrypoint"), f"{where}: entrypoint missing"
            # A RayJob needs a cluster: its own (rayClusterSpec) or an existing one picked by label.
            if "rayClusterSpec" in spec:
                _check_raycluster_spec(spec["rayClusterSpec"], where)
            else:
                assert spec["clusterSelector"]["ray.io/cluster"] in clusters, f"{where}: selects an unknown cluster"
        else:
            pytest.fail(f"{where}: unexpected kind")


def test_kuberay_cluster_autoscales_the_documented_groups():
    """The RayCluster autoscales a CPU decode group and an A100 group from 0; the head takes no work."""
    (cluster,) = [d for _, d in _kuberay_docs() if d["kind"] == "RayCluster"]
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["authOptions"]["mode"] == "token"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-decode", "a100"}
    for g in groups.values():
        assert g["minReplicas"] == 0 and g["maxReplicas"] > 0
    gpu = groups["a100"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert str(gpu["nvidia.com/gpu"]) == "8"
    cpu = groups["cpu-decode"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu
    for g in groups.values():
        mounts = g["template"]["spec"]["containers"][0]["volumeMounts"]
        assert any(m["mountPath"] == "/dev/shm" for m in mounts), g["groupName"]


# ----------------------------------------------------------------------------------------------- guide consistency


def _guide_code_lines() -> list[str]:
    """Shell lines of the guide's fenced code blocks, backslash continuations joined, comments dropped."""
    lines, block, buf = [], False, ""
    for raw in GUIDE.read_text().splitlines():
        if raw.strip().startswith("```"):
            block = not block
            continue
        if not block:
            continue
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            lines.append(buf.strip())
        buf = ""
    return lines


def _job_commands() -> list[tuple[str, str]]:
    """(where, command) for every job invocation in the guide and in the RayJob entrypoints."""
    found = [(f"cluster/README.md: {line[:60]}", line) for line in _guide_code_lines()
             if re.search(r"(^|[\s/])jobs/\w+\.py", line)]
    for path, d in _kuberay_docs():
        if d["kind"] == "RayJob":
            found.append((f"cluster/kuberay/{path.name}", " ".join(d["spec"]["entrypoint"].split())))
    return found


def _schema_keys(stem: str) -> set[str]:
    """Every key a job accepts (its schema's leaves: `input`, `decode.fps`, ...)."""
    return {key for key, *_ in describe(_job_schema(stem))}


def _check_job_command(command: str) -> tuple[str, list[str]]:
    """Return (job stem, problems) for one shell command that runs a job file."""
    tokens = shlex.split(command)
    idx = next(i for i, t in enumerate(tokens) if re.search(r"(^|/)jobs/\w+\.py$", t))
    stem = Path(tokens[idx]).stem
    problems = []
    if not (REPO / "jobs" / f"{stem}.py").exists():
        problems.append(f"jobs/{stem}.py does not exist")
    if stem not in COMMANDS:
        return stem, problems + [f"{stem} is not a job of pipeline.entrypoints.COMMANDS, so its keys cannot be checked"]
    keys = _schema_keys(stem)
    for tok in tokens[idx + 1:]:
        if tok.startswith("-") or tok in ("&&", ";", "|"):
            break
        if tok.endswith((".yaml", ".yml")) and "=" not in tok:
            continue
        key = tok.split("=", 1)[0] if "=" in tok else None
        if key is None:
            problems.append(f"argument {tok!r} is not a key=value override")
        elif key == "config":
            continue
        elif key not in keys:
            problems.append(f"override key {key!r} is not a key of {stem}'s schema ({COMMANDS[stem].schema})")
    return stem, problems


def _job_schema(stem: str):
    """The dataclass a job's keys load into (`pipeline.entrypoints.COMMANDS`)."""
    return COMMANDS[stem].load_schema()


def test_guide_shows_every_stage():
    """The guide and the RayJobs show the tokenize job and both training stages (so the next test is not vacuous)."""
    stems = set()
    for _, command in _JOB_COMMANDS:
        stems.add(Path(re.search(r"(?:^|[\s/])(jobs/\w+\.py)", command).group(1)).stem)
    assert JOBS_WE_DOCUMENT <= stems, f"missing: {JOBS_WE_DOCUMENT - stems}"


_JOB_COMMANDS = _job_commands()


@pytest.mark.parametrize("where,command", _JOB_COMMANDS, ids=[f"{i}-{w.split(':')[0]}" for i, (w, _) in enumerate(_JOB_COMMANDS)])
def test_guide_job_command_names_real_job_and_keys(where, command):
    """A documented job command names an existing job file and only keys its YAML config has."""
    _, problems = _check_job_command(command)
    assert not problems, f"{where}\n  {command}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("where,command", _JOB_COMMANDS, ids=[f"{i}-{w.split(':')[0]}" for i, (w, _) in enumerate(_JOB_COMMANDS)])
def test_guide_job_command_loads_with_the_jobs_schema(where, command):
    """The documented overrides pass the job's own config loader and validation (e.g. batch divisible by workers)."""
    stem, problems = _check_job_command(command)
    if problems:
        pytest.skip("reported by test_guide_job_command_names_real_job_and_keys")
    tokens = shlex.split(command)
    idx = next(i for i, t in enumerate(tokens) if t.endswith(f"jobs/{stem}.py"))
    overrides = [t for t in tokens[idx + 1:] if "=" in t]
    try:
        load_config(_job_schema(stem), default_yaml(stem), overrides)
    except (ValueError, TypeError) as e:  # ConfigError and __post_init__ errors name the key and the fix
        pytest.fail(f"{where}\n  {command}\n  {type(e).__name__}: {e}")


def test_guide_ray_commands_name_existing_files():
    """`ray up/down/dashboard` and `kubectl apply -f` lines point at files that exist; submits ship the repo."""
    lines = _guide_code_lines()
    refs = [m.group(1) for line in lines for m in re.finditer(r"(cluster/[\w./-]+\.(?:ya?ml|Dockerfile)|cluster/Dockerfile)", line)]
    assert refs
    assert not [r for r in refs if not (REPO / r).exists()], refs
    submits = [line for line in lines if line.startswith(("ray job submit", "RAY_AUTH_MODE=token ray job submit"))]
    assert submits
    for line in submits:
        assert "--working-dir ." in line, line
        assert " -- python jobs/" in line, line


def test_job_command_checker_catches_a_bad_key():
    """The command checker reports a key the job's schema does not have and a job file that does not exist."""
    assert _check_job_command("python jobs/tokenize_corpus.py input=s3://b/x decode.fps=2")[1] == []
    assert "decode.sizes" in " ".join(_check_job_command("python jobs/tokenize_corpus.py decode.sizes=128")[1])
    assert "does not exist" in " ".join(_check_job_command("python jobs/nope.py input=x")[1])
