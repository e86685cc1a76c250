"""The deployment manifests (``deploy/compose``, ``deploy/k8s``) stay valid and true to the code.

- Kubernetes: strict validation (unknown fields fail) against the official JSON schemas bundled,
  offline, by the ``kubernetes-validate`` package, for 1.30 and for the newest version it ships.
- Compose: validation against the Compose Specification schema, taken from the Go module
  ``github.com/compose-spec/compose-go/v2`` (the Go module proxy caches it; nothing vendored).
- Every ``CALLVAULT_*`` name is a real setting; secrets are placeholders and stay out of the
  ConfigMap; workers never outnumber the recordings topic's partitions.

Each check is a function returning the problems it found; the ``*_catches_*`` tests feed it a
broken copy to prove it can fail.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate  # the test extra: kubernetes-validate, official Kubernetes schemas, offline
import pytest
import typer.main
import yaml
from kubernetes_validate.utils import latest_version

from callvault.cli import app as cli_app
from callvault.settings_doc import env_names, settings_classes
from ingest.settings import KafkaSettings

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.13.0"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"

K8S_VERSIONS = ("1.30", latest_version())
IMAGE = "callvault:latest"
WORKER = "callvault-worker"
# Read straight from the environment by core.config, not settings fields.
PROCESS_ENV = {"CALLVAULT_HOME", "CALLVAULT_CONFIG"}
KNOWN_ENV = set(env_names()) | PROCESS_ENV
PLACEHOLDER = "change-me"
# Compose-only secrets of the trial engines, in .env.example.
TRIAL_SECRETS = {"POSTGRES_PASSWORD", "MINIO_KMS_SECRET_KEY"}


def secret_env_names() -> set[str]:
    """Settings typed SecretStr, plus the catalog URL (it carries the database password)."""
    names = {"CALLVAULT_CATALOG_URL"}
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            if "SecretStr" in repr(field.annotation):
                names.add(f"{cls.model_config['env_prefix']}{name}".upper())
    return names


# --- loading ---------------------------------------------------------------------------------

def yaml_files() -> list[Path]:
    return sorted(p for d in (COMPOSE_DIR, K8S_DIR) for p in (*d.glob("*.yaml"), *d.glob("*.yml")))


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[dict]:
    return [doc for path in k8s_files() for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(doc: dict) -> dict | None:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if pod_spec(d) is not None]


def callvault_services(spec: dict) -> dict[str, dict]:
    return {name: svc for name, svc in spec["services"].items() if svc.get("image") == IMAGE}


def container_env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- checks: each returns a list of problems -------------------------------------------------

def k8s_schema_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return [f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} (k8s {version}) at {where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


@functools.lru_cache
def compose_schema() -> dict:
    """The official Compose schema, as shipped inside compose-go (downloaded once by `go mod`)."""
    out = subprocess.run(["go", "mod", "download", "-json", COMPOSE_GO], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=300)
    return json.loads((Path(json.loads(out.stdout)["Dir"]) / "schema" / "compose-spec.json").read_text())


def compose_schema_errors(spec: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)]


_ENV_NAME = re.compile(r"\bCALLVAULT_[A-Z0-9_]*")


def unknown_env_names(text: str) -> list[str]:
    """``CALLVAULT_*`` names in text that no setting defines (``CALLVAULT_STORAGE_*`` prefixes pass)."""
    unknown = []
    for match in _ENV_NAME.finditer(text):
        if text[match.end():match.end() + 1] == "*":
            continue
        if match.group() not in KNOWN_ENV:
            unknown.append(match.group())
    return sorted(set(unknown))


def unknown_env_keys(keys) -> list[str]:
    """Variables handed to a callvault container must be settings (a typo is silently ignored)."""
    return sorted(k for k in keys if k not in KNOWN_ENV)


_TOKEN = re.compile(r"[A-Za-z0-9+/=_]{20,}")


def real_looking_secrets(values: dict[str, str]) -> list[str]:
    """A placeholder says change-me and holds no long random-looking token (a key, a password)."""
    problems = []
    for key, value in values.items():
        value = str(value)
        if PLACEHOLDER not in value.lower():
            problems.append(f"{key}: not a {PLACEHOLDER} placeholder")
        for token in _TOKEN.findall(value):
            if re.search(r"\d", token) and re.search(r"[A-Za-z]", token):
                problems.append(f"{key}: random-looking token {token[:4]}…")
    return problems


def worker_scale_problems(docs: list[dict], compose_spec: dict, partitions: int) -> list[str]:
    problems = []
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
            and d["spec"]["scaleTargetRef"]["name"] == WORKER]
    if len(hpas) != 1:
        problems.append(f"expected one HorizontalPodAutoscaler for {WORKER}, found {len(hpas)}")
    for hpa in hpas:
        spec = hpa["spec"]
        if spec["maxReplicas"] > partitions:
            problems.append(f"HPA maxReplicas {spec['maxReplicas']} > {partitions} partitions")
        if spec.get("minReplicas", 1) > spec["maxReplicas"]:
            problems.append("HPA minReplicas > maxReplicas")
    replicas = find(docs, "Deployment", WORKER)["spec"].get("replicas", 1)
    if replicas > partitions:
        problems.append(f"worker Deployment replicas {replicas} > {partitions} partitions")
    configured = find(docs, "ConfigMap", "callvault-config")["data"].get("CALLVAULT_KAFKA_PARTITIONS")
    if configured is not None:
        for hpa in hpas:
            if hpa["spec"]["maxReplicas"] > int(configured):
                problems.append(f"HPA maxReplicas > CALLVAULT_KAFKA_PARTITIONS={configured} of the ConfigMap")
    compose_replicas = compose_spec["services"]["worker"].get("deploy", {}).get("replicas", 1)
    if compose_replicas > partitions:
        problems.append(f"compose worker replicas {compose_replicas} > {partitions} partitions")
    return problems


def kustomization_problems(kust: dict, files: list[Path]) -> list[str]:
    listed = kust.get("resources", [])
    problems = [f"listed but missing: {r}" for r in listed if not (K8S_DIR / r).is_file()]
    problems += [f"not listed in kustomization.yaml: {p.name}" for p in files if p.name not in listed]
    if len(set(listed)) != len(listed):
        problems.append("a resource is listed twice")
    return problems


def hardening_problems(doc: dict, home: str) -> list[str]:
    """Non-root, no privilege escalation, read-only root, writable /tmp and CALLVAULT_HOME only."""
    spec, name = pod_spec(doc), f"{doc['kind']}/{doc['metadata']['name']}"
    problems = []
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{name}: pod securityContext.runAsNonRoot is not true")
    empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem"):
            problems.append(f"{name}/{c['name']}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}/{c['name']}: capabilities are not all dropped")
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            problems.append(f"{name}/{c['name']}: resources without requests and limits")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for path in ("/tmp", home):
            if mounts.get(path) not in empty_dirs:
                problems.append(f"{name}/{c['name']}: {path} is not an emptyDir")
    return problems


# --- every file parses -----------------------------------------------------------------------

def test_deploy_folders_hold_yaml():
    names = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()}
    assert {"compose/compose.yaml", "k8s/kustomization.yaml", "k8s/worker-deployment.yaml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_parses_into_mappings(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)
    if path.parent == K8S_DIR and path.name != "kustomization.yaml":
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name")


# --- Kubernetes schemas ----------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_manifest_validates_against_the_official_schema(path, version):
    errors = [e for doc in yaml.safe_load_all(path.read_text()) if doc for e in k8s_schema_errors(doc, version)]
    assert errors == []


def test_k8s_schema_check_catches_an_unknown_field_and_a_wrong_type():
    bad = copy.deepcopy(find(k8s_docs(), "Deployment", WORKER))
    bad["spec"]["replica"] = bad["spec"].pop("replicas")
    assert k8s_schema_errors(bad, "1.30")
    bad = copy.deepcopy(find(k8s_docs(), "ConfigMap", "callvault-config"))
    bad["data"]["CALLVAULT_KAFKA_PARTITIONS"] = 4  # ConfigMap values are strings
    assert k8s_schema_errors(bad, "1.30")


def test_kustomization_lists_every_manifest_in_the_namespace():
    docs = k8s_docs()
    assert kustomization_problems(kustomization(), k8s_files()) == []
    namespace = find(docs, "Namespace", "callvault")["metadata"]["name"]
    assert kustomization()["namespace"] == namespace
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in docs)


def test_kustomization_check_catches_a_missing_and_an_unlisted_file():
    kust = copy.deepcopy(kustomization())
    kust["resources"] = [*kust["resources"][1:], "no-such-file.yaml"]
    problems = kustomization_problems(kust, k8s_files())
    assert any("no-such-file.yaml" in p for p in problems)
    assert any(k8s_files()[0].name in p or "not listed" in p for p in problems)


# --- Compose schema --------------------------------------------------------------------------

def test_compose_validates_against_the_compose_specification():
    assert compose_schema_errors(compose()) == []


def test_compose_schema_check_catches_an_unknown_key_a_wrong_type_and_a_bad_value():
    bad = compose()
    bad["services"]["worker"]["healthchek"] = bad["services"]["worker"].pop("healthcheck")
    assert compose_schema_errors(bad)
    bad = compose()
    bad["services"]["api"]["ports"] = "8080:8080"  # a list is required
    assert compose_schema_errors(bad)
    bad = compose()
    bad["services"]["worker"]["depends_on"]["init"]["condition"] = "service_finished"
    assert compose_schema_errors(bad)


def test_compose_runs_init_once_then_worker_api_and_sweeper_from_the_callvault_image():
    spec = compose()
    services = callvault_services(spec)
    assert set(services) == {"init", "worker", "api", "sweeper"}
    assert all("build" in s and s["build"]["dockerfile"] == "deploy/compose/Dockerfile" for s in services.values())
    assert (ROOT / spec["services"]["init"]["build"]["context"].replace("../..", ".")).resolve() == ROOT.resolve()
    assert services["init"]["command"] == ["storage", "init"] and services["init"]["restart"] == "no"
    for name in ("worker", "api", "sweeper"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "test" in services[name]["healthcheck"]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["command"] == ["api"]
    assert services["api"]["environment"]["CALLVAULT_ACCESS_API_HOST"] == "0.0.0.0"
    assert "callvault lifecycle sweep" in " ".join(services["sweeper"]["command"])
    # The sweeper service sweeps, so the workers' timer is off.
    assert services["worker"]["environment"]["CALLVAULT_INGEST_SWEEP_INTERVAL_SECONDS"] == "0"
    for name, service in spec["services"].items():
        assert "image" in service or "build" in service, name


def test_dockerfile_builds_the_image_the_manifests_run():
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r"apt-get install .*ffmpeg", dockerfile)
    assert "pip install --no-cache-dir ." in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.M)
    home = re.search(r"CALLVAULT_HOME=(\S+)", dockerfile).group(1)
    assert home == find(k8s_docs(), "ConfigMap", "callvault-config")["data"]["CALLVAULT_HOME"]
    assert home == compose()["x-callvault-env"]["CALLVAULT_HOME"]
    for doc in workloads(k8s_docs()):
        assert pod_spec(doc)["securityContext"]["runAsUser"] == 10001


# --- settings names --------------------------------------------------------------------------

def test_process_env_names_are_still_read_by_callvault_config():
    source = (ROOT / "core" / "config.py").read_text()
    assert all(f'"{name}"' in source for name in PROCESS_ENV)


@pytest.mark.parametrize("path", [*yaml_files(), ENV_EXAMPLE, COMPOSE_DIR / "Dockerfile", DEPLOY / "README.md"],
                         ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_callvault_name_in_deploy_is_a_real_setting(path):
    assert unknown_env_names(path.read_text()) == []


def test_every_variable_given_to_a_callvault_container_is_a_setting():
    docs = k8s_docs()
    keys = [*find(docs, "ConfigMap", "callvault-config")["data"],
            *find(docs, "Secret", "callvault-secrets")["stringData"]]
    for doc in workloads(docs):
        for c in pod_spec(doc)["containers"]:
            keys += container_env(c)
    for service in callvault_services(compose()).values():
        keys += service["environment"]
    keys += [k for k in env_example() if k.startswith("CALLVAULT")]
    assert unknown_env_keys(keys) == []


def test_env_name_checks_catch_typos():
    assert unknown_env_names("CALLVAULT_KAFKA_PARTITION: 4 and CALLVAULT_STORAGE_* stays") == \
        ["CALLVAULT_KAFKA_PARTITION"]
    assert unknown_env_keys(["CALVAULT_KAFKA_PARTITIONS", "CALLVAULT_KAFKA_PARTITIONS"]) == \
        ["CALVAULT_KAFKA_PARTITIONS"]


# --- secrets ---------------------------------------------------------------------------------

# Secrets with a working default that an operator adds when needed (per-tenant masters; the
# retired masters and the pinned number-hash key of a master-key rotation, see deploy/README.md).
OPTIONAL_SECRETS = {"CALLVAULT_STORAGE_TENANT_MASTER_KEYS", "CALLVAULT_STORAGE_RETIRED_MASTER_KEYS",
                    "CALLVAULT_STORAGE_NUMBER_HASH_KEY"}


def test_secret_template_holds_placeholders_only():
    secret = find(k8s_docs(), "Secret", "callvault-secrets")
    assert "data" not in secret, "use stringData so the placeholders can be checked"
    assert set(secret["stringData"]) == secret_env_names() - OPTIONAL_SECRETS
    assert real_looking_secrets(secret["stringData"]) == []


def test_env_example_holds_placeholders_only():
    values = env_example()
    secrets = {k: v for k, v in values.items() if k in secret_env_names() | TRIAL_SECRETS}
    assert set(secrets) >= secret_env_names() - OPTIONAL_SECRETS
    assert real_looking_secrets(secrets) == []


def test_secrets_never_sit_in_the_configmap_or_in_compose():
    docs = k8s_docs()
    assert not set(find(docs, "ConfigMap", "callvault-config")["data"]) & secret_env_names()
    for doc in workloads(docs):
        for c in pod_spec(doc)["containers"]:
            assert not set(container_env(c)) & secret_env_names()
            refs = {(next(iter(r)), r[next(iter(r))]["name"]) for r in c.get("envFrom", [])}
            assert refs == {("configMapRef", "callvault-config"), ("secretRef", "callvault-secrets")}
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if key in secret_env_names() | TRIAL_SECRETS:
                assert re.fullmatch(r"\$\{" + key + r"[:?].*\}", str(value)), f"{name}: {key} is not from .env"
    assert (COMPOSE_DIR / ".gitignore").read_text().splitlines().count(".env") == 1


def test_secret_check_catches_real_looking_values():
    assert real_looking_secrets({"CALLVAULT_ACCESS_JWT_SECRET": "hunter2hunter2"})
    assert real_looking_secrets({"CALLVAULT_STORAGE_MASTER_KEY": "change-me" + "q3JX9v2Lw8TzR1mKc5bNf0Hs"})
    assert real_looking_secrets({"CALLVAULT_CATALOG_URL": "postgresql+psycopg://cv:S3cretPw@db/cv"})
    assert real_looking_secrets({"CALLVAULT_STORAGE_MASTER_KEY": "change-me-base64-32-bytes"}) == []


# --- scale and processes ---------------------------------------------------------------------

def default_partitions() -> int:
    return KafkaSettings.model_fields["partitions"].default


def test_workers_never_outnumber_the_default_partitions():
    assert worker_scale_problems(k8s_docs(), compose(), default_partitions()) == []


def test_scale_check_catches_more_workers_than_partitions():
    docs = copy.deepcopy(k8s_docs())
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["maxReplicas"] = default_partitions() + 1
    assert worker_scale_problems(docs, compose(), default_partitions())
    spec = compose()
    spec["services"]["worker"]["deploy"]["replicas"] = default_partitions() + 1
    assert worker_scale_problems(k8s_docs(), spec, default_partitions())


def test_k8s_workloads_are_hardened():
    home = find(k8s_docs(), "ConfigMap", "callvault-config")["data"]["CALLVAULT_HOME"]
    problems = [p for doc in workloads(k8s_docs()) for p in hardening_problems(doc, home)]
    assert problems == []


def test_hardening_check_catches_a_writable_root_and_a_missing_tmp():
    home = find(k8s_docs(), "ConfigMap", "callvault-config")["data"]["CALLVAULT_HOME"]
    bad = copy.deepcopy(find(k8s_docs(), "Deployment", WORKER))
    container = pod_spec(bad)["containers"][0]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]
    problems = hardening_problems(bad, home)
    assert any("readOnlyRootFilesystem" in p for p in problems) and any("/tmp" in p for p in problems)


def test_k8s_processes_match_the_design():
    docs = k8s_docs()
    worker = pod_spec(find(docs, "Deployment", WORKER))["containers"][0]
    assert worker["args"] == ["worker"]
    assert container_env(worker)["CALLVAULT_INGEST_SWEEP_INTERVAL_SECONDS"] == "0"
    assert "/metrics" in " ".join(worker["livenessProbe"]["exec"]["command"])
    assert find(docs, "PodDisruptionBudget", WORKER)["spec"]["selector"] == \
        find(docs, "Deployment", WORKER)["spec"]["selector"]

    api = find(docs, "Deployment", "callvault-api")
    container = pod_spec(api)["containers"][0]
    assert container["args"] == ["api"]
    assert container_env(container)["CALLVAULT_ACCESS_API_HOST"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    port = find(docs, "ConfigMap", "callvault-config")["data"]["CALLVAULT_ACCESS_API_PORT"]
    assert container["ports"][0]["containerPort"] == int(port)
    service = find(docs, "Service", "callvault-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]

    init = pod_spec(find(docs, "Job", "callvault-storage-init"))["containers"][0]
    assert init["args"] == ["storage", "init"]

    cron = find(docs, "CronJob", "callvault-sweeper")
    assert cron["spec"]["schedule"] == "*/15 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cron)["containers"][0]["args"] == ["lifecycle", "sweep"]

    for doc in workloads(docs):
        assert all(c["image"] == IMAGE for c in pod_spec(doc)["containers"])


def unknown_commands(argvs: list[list[str]]) -> list[str]:
    """Each argv (after the ``callvault`` entrypoint) must name a real command of the CLI."""
    unknown = []
    for argv in argvs:
        group = typer.main.get_command(cli_app)
        for word in argv:
            if not hasattr(group, "commands"):
                break
            if word not in group.commands:
                unknown.append(" ".join(argv))
                break
            group = group.commands[word]
        else:
            if hasattr(group, "commands"):
                unknown.append(" ".join(argv) + " (a group, not a command)")
    return unknown


def manifest_commands() -> list[list[str]]:
    argvs = [c["args"] for doc in workloads(k8s_docs()) for c in pod_spec(doc)["containers"]]
    for service in callvault_services(compose()).values():
        if "entrypoint" not in service:
            argvs.append(service["command"])
        else:  # a shell loop: the callvault invocations inside it
            argvs += [m.split() for m in re.findall(r"callvault ([a-z ]+?)(?= &&|;|$)", " ".join(service["command"]))]
    return argvs


def test_every_process_runs_a_real_callvault_command():
    argvs = manifest_commands()
    assert ["lifecycle", "sweep"] in argvs and ["storage", "init"] in argvs and ["api"] in argvs
    assert unknown_commands(argvs) == []


def test_command_check_catches_a_missing_command():
    assert unknown_commands([["lifecycle", "swep"], ["storage"], ["worker"]]) == \
        ["lifecycle swep", "storage (a group, not a command)"]
