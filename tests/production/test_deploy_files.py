"""The deployment files, checked without a Docker engine: docker-compose.yml against the
compose-spec schema (and `docker-compose config` where Debian's package is installed),
deploy/Dockerfile with hadolint, plus the rules the operator's guide promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A tool from the venv (the test extras install it) or PATH; skip if neither has it."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        pytest.skip(f'{name} is not installed (pip install -e ".[test]")')
    return str(found)


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(COMPOSE.read_text())


# --- docker-compose.yml ---------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema() -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_catches_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    depends_on:", "    dependson:", 1))
    done = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken))
    assert done.returncode != 0
    assert "dependson" in done.stdout + done.stderr


def test_docker_compose_config_accepts_the_file_with_the_example_env(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (Debian package) is not installed")
    done = run(binary, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "-q")
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_services_start_in_order_and_scale() -> None:
    services = compose()["services"]
    assert {"redis", "postgres", "minio", "createbucket", "migrate", "worker", "beat"} <= set(
        services
    )
    assert "flower" in services
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} needs a healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot"
    worker = services["worker"]
    # `--scale worker=N` needs replicas that never clash: no fixed name, no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][0] == "worker" and services["beat"]["command"] == ["beat"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["createbucket"]["condition"] == "service_completed_successfully"
    for name in ("redis", "postgres", "minio", "worker", "flower"):
        assert "healthcheck" in services[name], name


def test_compose_uses_named_volumes_and_one_image() -> None:
    spec = compose()
    declared = set(spec["volumes"])
    assert {"redis-data", "postgres-data", "minio-data"} <= declared
    for name, service in spec["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source.startswith(".") or source in declared, f"{name}: {mount}"
    images = {s["image"] for s in spec["services"].values() if s.get("build", {}).get("dockerfile")}
    assert len(images) == 1  # worker, beat, migrate, flower and the CLI share one image


def test_compose_takes_every_secret_from_the_env_file() -> None:
    lines = COMPOSE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    spec = compose()
    for name, service in spec["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if re.search(r"PASSWORD|SECRET|KEY|AUTH", key):
                assert "${" in str(value), f"{name}.{key} holds a literal secret"
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = _env_file(ENV_EXAMPLE)
    assert required <= set(example), f"missing from env.example: {required - set(example)}"
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|KEY|AUTH", key) and key != "RAWQUERY_S3_REGION":
            assert "change-me" in value, f"env.example: {key} must be a placeholder"


def test_real_env_file_is_gitignored() -> None:
    done = run("git", "check-ignore", "-q", ".env")
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert done.returncode == 0, ".env must be in .gitignore"


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


# --- deploy/Dockerfile --------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    done = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    done = run(tool("hadolint"), str(bad))
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # untagged base image


def test_dockerfile_is_slim_non_root_and_pinned() -> None:
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["rq"]' in text
    assert "PIP_CONSTRAINT=/src/deploy/constraints.txt" in text


def test_constraints_pin_every_runtime_dependency() -> None:
    """Every package the image installs (the project with its `monitoring` extra, and
    everything those need) has an exact version in deploy/constraints.txt."""
    pinned = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pinned[canonicalize_name(name)] = version
    assert "rawquery-workers" not in pinned
    needed = _closure("rawquery-workers", {"monitoring"})
    missing = sorted(needed - set(pinned) - {"rawquery-workers"})
    assert not missing, f"not pinned in deploy/constraints.txt: {missing}"


def _closure(root: str, extras: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not in this venv (e.g. flower without the monitoring extra)
        for raw in requires:
            req = Requirement(raw)
            marker_env = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in marker_env):
                todo.append((req.name, set(req.extras)))
    return seen


def test_the_example_s3_policy_grants_the_warehouse_prefix_only() -> None:
    policy = orjson.loads((ROOT / "deploy" / "s3-policy.json").read_bytes())
    resources = [r for s in policy["Statement"] for r in [s["Resource"]]]
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert set(resources) == {"arn:aws:s3:::rawquery", "arn:aws:s3:::rawquery/warehouse/*"}
    assert not any(a.endswith("*") or "Bucket" in a and "List" not in a and "Location" not in a
                   for a in actions)  # fmt: skip
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions
    assert "deploy/s3-policy.json" in (ROOT / "deploy" / "README.md").read_text()
