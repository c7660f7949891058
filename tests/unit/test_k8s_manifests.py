"""Offline validation of the Kubernetes deployment in ``k8s/``.

What runs here, without a cluster or network:

* ``kubectl kustomize k8s`` renders the manifests (the same build as ``kubectl apply -k k8s``);
* every core-kind object passes ``kubernetes-validate --strict`` (unknown fields are errors);
* the RayService and Milvus objects validate with ``jsonschema`` against the CRDs vendored in
  ``k8s/crds/`` (``spec.versions[name=v1*].schema.openAPIV3Schema``), made strict the way the
  API server's strict field validation is: ``additionalProperties: false`` on every object schema
  that lists ``properties`` (see ``k8s/crds/*/README.md``);
* ``spec.serveConfigV2`` validates with Ray Serve's own schema and its ``args`` with ltrr's
  :class:`~ltrr.config.AppConfig`, and differs from ``deployments/serve_config.yaml`` only where
  the cluster needs it (in-cluster backend URLs, paths on the shared volume, proxy host);
* cross-references hold: URLs name rendered Services, paths sit on the shared volume, Secret
  names/keys exist, the ingest Job reads the same Serve config as the RayService.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
LOCAL_SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"
NAMESPACE = "ltrr"
# kubectl here is v1.32 and kubernetes-validate ships schemas for 1.25-1.37: validate against
# 1.32 so the manifests do not rely on fields newer than a two-year-old cluster has.
K8S_VERSION = "1.32"
#: (apiVersion, kind) -> (vendored CRD file, schema version to use).
CRDS: dict[tuple[str, str], tuple[str, str]] = {
    ("ray.io/v1", "RayService"): ("kuberay/ray.io_rayservices.yaml", "v1"),
    ("milvus.io/v1beta1", "Milvus"): ("milvus-operator/milvus.io_milvuses.yaml", "v1beta1"),
}
EXPECTED_OBJECTS = {
    ("Namespace", "ltrr"),
    ("PersistentVolumeClaim", "ltrr-shared"),
    ("Secret", "meilisearch-master-key"),
    ("Service", "meilisearch"),
    ("Service", "meilisearch-headless"),
    ("StatefulSet", "meilisearch"),
    ("Milvus", "ltrr"),
    ("Secret", "ltrr-ray-auth"),
    ("Secret", "ltrr-api-tokens"),
    ("RayService", "ltrr"),
    ("ConfigMap", "ltrr-serve-config"),
    ("Job", "ltrr-ingest"),
    ("NetworkPolicy", "ltrr-ray-ingress"),
}
APP = "applications[0]"
#: The only leaves in which serveConfigV2 may differ from deployments/serve_config.yaml.
EXPECTED_CONFIG_DIFF = {
    "http_options.host",
    f"{APP}.args.catalog_path",
    f"{APP}.args.events_path",
    f"{APP}.args.strategies.lexical.config.url",
    f"{APP}.args.strategies.lexical.config.api_key",
    f"{APP}.args.strategies.memory.config.url",
    f"{APP}.args.strategies.memory.config.api_key",
    f"{APP}.args.strategies.vector.config.uri",
    f"{APP}.args.strategies.graph.config.cache_dir",
    f"{APP}.args.policy.checkpoint_dir",
    f"{APP}.args.ranking.model_dir",
    "grpc_options.enable_reflection",
    f"{APP}.args.auth.token_files",  # [] in k8s: tokens come from $LTRR_AUTH_TOKENS
    *(f"{APP}.args.auth.token_files[{i}].{leaf}" for i in (0, 1) for leaf in ("path", "scopes")),
}


# -- helpers -------------------------------------------------------------------------------
def _load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which unknown object fields are errors.

    Object schemas listing ``properties`` get ``additionalProperties: false`` unless they
    keep unknown fields (``x-kubernetes-preserve-unknown-fields``) or already say what
    extra keys may hold (maps); ``nullable: true`` becomes an extra ``"null"`` type.
    """
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: _strict(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not") else v
        for k, v in schema.items()
    }
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts/lists by dotted path (``a.b[0].c``); empty containers are leaves."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _mounts(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> volume source of each of ``container``'s volume mounts."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot render k8s/ with `kubectl kustomize`")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize k8s failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    out = {}
    for key, (rel, version) in CRDS.items():
        crd = _load_yaml(K8S / "crds" / rel)
        (ver,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        schema = _strict(ver["schema"]["openAPIV3Schema"])
        out[key] = jsonschema.Draft4Validator(schema)
    return out


@pytest.fixture(scope="module")
def rayservice(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "RayService", "ltrr")


@pytest.fixture(scope="module")
def serve_cfg(rayservice: dict[str, Any]) -> dict[str, Any]:
    cfg = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    assert isinstance(cfg, dict), "serveConfigV2 must be a YAML mapping"
    return cfg


def _ray_pods(rayservice: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, Ray container) of the head and of every worker group."""
    rcc = rayservice["spec"]["rayClusterConfig"]
    specs = [rcc["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in rcc["workerGroupSpecs"]]
    return [(s, s["containers"][0]) for s in specs]


# -- rendering and schema validation -------------------------------------------------------
def test_kustomize_renders_exactly_the_expected_objects(docs: list[dict[str, Any]]) -> None:
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == EXPECTED_OBJECTS
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']}/{d['metadata']['name']}"
    # The vendored CRDs are for validation only; the operators own them in a cluster.
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]


def test_core_objects_pass_kubernetes_validate_strict(docs: list[dict[str, Any]]) -> None:
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRDS]
    assert len(core) == len(docs) - len(CRDS), "every custom resource needs a vendored CRD"
    for d in core:
        # Raises SchemaNotFoundError for a kind it has no schema for, so nothing passes unchecked.
        assert kubernetes_validate.validate(d, K8S_VERSION, strict=True) == K8S_VERSION


def test_kubernetes_validate_strict_rejects_an_unknown_field(docs: list[dict[str, Any]]) -> None:
    sts = copy.deepcopy(_one(docs, "StatefulSet", "meilisearch"))
    sts["spec"]["replica"] = 1  # typo of `replicas`
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def test_custom_resources_validate_against_vendored_crds(docs: list[dict[str, Any]], crd_validators: Any) -> None:
    customs = [d for d in docs if (d["apiVersion"], d["kind"]) in CRDS]
    assert sorted(d["kind"] for d in customs) == ["Milvus", "RayService"]
    for d in customs:
        errors = [
            f"{'.'.join(map(str, e.path))}: {e.message}"
            for e in crd_validators[(d["apiVersion"], d["kind"])].iter_errors(d)
        ]
        assert errors == [], f"{d['kind']}/{d['metadata']['name']}"


def _set_path(obj: Any, path: tuple[Any, ...], value: Any, rename: str | None = None) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if rename is None:
        obj[path[-1]] = value
    else:
        obj[rename] = obj.pop(path[-1])


WG = ("spec", "rayClusterConfig", "workerGroupSpecs", 0)
HEAD_CONTAINER = ("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0)


@pytest.mark.parametrize(
    "kind, path, value, rename, expected",
    [
        # typo'd field names, deep inside the embedded pod template too
        ("RayService", (*WG, "replicas"), None, "replica", "'replica' was unexpected"),
        ("RayService", (*HEAD_CONTAINER, "imagePullPolicy"), None, "imagePullPolcy", "'imagePullPolcy' was unexpected"),
        ("RayService", ("spec", "serveService", "spec", "ports", 0, "port"), None, "prot", "'prot' was unexpected"),
        # wrong types and values
        ("RayService", (*WG, "rayStartParams", "num-cpus"), 1, None, "1 is not of type 'string'"),
        ("RayService", ("spec", "rayClusterConfig", "authOptions", "mode"), "tokens", None, "'tokens' is not one of"),
        ("Milvus", ("spec", "mode"), "standlone", None, "'standlone' is not one of"),
        ("Milvus", ("spec", "components", "standalone", "replicas"), None, "replica", "'replica' was unexpected"),
    ],
)
def test_crd_check_rejects_broken_custom_resources(
    docs: list[dict[str, Any]],
    crd_validators: Any,
    kind: str,
    path: tuple[Any, ...],
    value: Any,
    rename: str | None,
    expected: str,
) -> None:
    broken = copy.deepcopy(_one(docs, kind, "ltrr"))
    _set_path(broken, path, value, rename)
    messages = [e.message for e in crd_validators[(broken["apiVersion"], kind)].iter_errors(broken)]
    assert any(expected in m for m in messages), messages


def test_vendored_crds_are_unmodified() -> None:
    """Each vendored CRD's sha256 is the one its README records (provenance)."""
    for rel, _ in CRDS.values():
        path = K8S / "crds" / rel
        readme = (path.parent / "README.md").read_text()
        row = re.search(rf"`{re.escape(path.name)}`.*`([0-9a-f]{{64}})`", readme)
        assert row is not None, f"{path.parent.name}/README.md has no sha256 for {path.name}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.group(1), rel
        assert (path.parent / "LICENSE").read_text().lstrip().startswith("Apache License")


# -- the Serve config ----------------------------------------------------------------------
def test_serve_config_v2_passes_ray_serve_schema(serve_cfg: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        # Ray 2.60's serve/_private/config.py passes extra kwargs to pydantic.Field at import.
        warnings.filterwarnings("ignore", message="Using extra keyword arguments on `Field`")
        from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(serve_cfg)
    assert [a.name for a in schema.applications] == ["ltrr"]
    assert schema.applications[0].import_path == "deployments.app:build_app"
    assert schema.grpc_options.port == 9000
    assert schema.http_options.host == "0.0.0.0"
    assert schema.applications[0].external_scaler_enabled is True  # the dashboard's scale API needs it


def test_serve_config_v2_args_pass_ltrr_app_config(serve_cfg: dict[str, Any]) -> None:
    args = serve_cfg["applications"][0]["args"]
    try:
        from ltrr.config import AppConfig
        from ltrr.strategies.registry import config_class

        for name in args["strategies"]:
            config_class(name)
    except ImportError as exc:  # only a missing module, never a validation error, lands here
        pytest.xfail(f"ltrr config classes not importable yet: {exc}")
    cfg = AppConfig.model_validate(args)
    assert cfg.catalog_path == "/srv/ltrr/var/catalog.sqlite"
    assert cfg.events_path == "/srv/ltrr/var/events.sqlite"
    assert sorted(cfg.enabled()) == ["graph", "lexical", "memory", "vector"]


def test_serve_config_v2_differs_from_local_config_only_where_the_cluster_needs_it(
    serve_cfg: dict[str, Any],
) -> None:
    local = _flatten(_load_yaml(LOCAL_SERVE_CONFIG))
    k8s = _flatten(serve_cfg)
    differing = {p for p in local.keys() | k8s.keys() if local.get(p, "<absent>") != k8s.get(p, "<absent>")}
    assert differing == EXPECTED_CONFIG_DIFF
    # No Meilisearch key in the custom resource: the default comes from $LTRR_MEILI_MASTER_KEY.
    assert f"{APP}.args.strategies.lexical.config.api_key" not in k8s
    assert f"{APP}.args.strategies.memory.config.api_key" not in k8s


def test_backend_urls_name_rendered_services(docs: list[dict[str, Any]], serve_cfg: dict[str, Any]) -> None:
    strategies = serve_cfg["applications"][0]["args"]["strategies"]
    meili = _one(docs, "Service", "meilisearch")
    (meili_port,) = [p["port"] for p in meili["spec"]["ports"]]
    for name in ("lexical", "memory"):
        url = urlparse(strategies[name]["config"]["url"])
        host = f"meilisearch.{NAMESPACE}.svc.cluster.local"
        assert (url.scheme, url.hostname, url.port) == ("http", host, meili_port)
    milvus = _one(docs, "Milvus", "ltrr")
    uri = urlparse(strategies["vector"]["config"]["uri"])
    # The Milvus Operator names the Service `<Milvus name>-milvus`; Milvus listens on 19530.
    assert (uri.scheme, uri.hostname, uri.port) == (
        "http",
        f"{milvus['metadata']['name']}-milvus.{NAMESPACE}.svc.cluster.local",
        19530,
    )
    assert milvus["spec"]["mode"] == "standalone"
    # The ingest Job waits for the same two endpoints.
    script = _one(docs, "Job", "ltrr-ingest")["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    assert f"http://{url.hostname}:{url.port}/health" in script
    assert f'("{uri.hostname}", {uri.port})' in script


def test_ray_pods_share_env_ports_and_the_shared_volume(
    docs: list[dict[str, Any]], rayservice: dict[str, Any], serve_cfg: dict[str, Any]
) -> None:
    pvc = _one(docs, "PersistentVolumeClaim", "ltrr-shared")
    auth = rayservice["spec"]["rayClusterConfig"]["authOptions"]
    assert auth == {"mode": "token", "secretName": "ltrr-ray-auth"}
    assert "auth_token" in _one(docs, "Secret", auth["secretName"])["stringData"]
    args = serve_cfg["applications"][0]["args"]
    envs = []
    for pod, container in _ray_pods(rayservice):
        env = _env(container)
        envs.append(env)
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": auth["secretName"], "key": "auth_token"}}
        assert env["LTRR_MEILI_MASTER_KEY"] == {
            "secretKeyRef": {"name": "meilisearch-master-key", "key": "MEILI_MASTER_KEY"}
        }
        assert (
            env["HF_HUB_OFFLINE"],
            env["RAY_SERVE_USE_GRPC_BY_DEFAULT"],
            env["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"],
            env["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"],
        ) == ("1", "1", "1", "1")
        home = env["LTRR_HOME"]
        assert _mounts(pod, container)[home] == {
            "name": "ltrr-shared",
            "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]},
        }
        for key in ("catalog_path", "events_path"):
            assert args[key].startswith(home + "/"), key
        assert {p["containerPort"] for p in container["ports"]} >= {8000, 9000}
        assert container["image"] == "ltrr:0.1.0"
    assert all(e == envs[0] for e in envs), "head and worker env differ"
    ports = {p["name"]: p for p in rayservice["spec"]["serveService"]["spec"]["ports"]}
    assert (ports["grpc"]["port"], ports["grpc"]["targetPort"]) == (9000, serve_cfg["grpc_options"]["port"])


def test_ingest_job_reads_the_same_serve_config_and_gates_the_head(
    docs: list[dict[str, Any]], rayservice: dict[str, Any]
) -> None:
    cm = _one(docs, "ConfigMap", "ltrr-serve-config")
    assert cm["data"]["serve_config.yaml"] == rayservice["spec"]["serveConfigV2"]  # kustomize replacement
    pod = _one(docs, "Job", "ltrr-ingest")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"][-1]
    assert "ltrr ingest --config /etc/ltrr/serve_config.yaml" in command
    mounts = _mounts(pod, container)
    assert mounts["/etc/ltrr"]["configMap"]["name"] == cm["metadata"]["name"]
    home = _env(container)["LTRR_HOME"]
    assert mounts[home]["persistentVolumeClaim"]["claimName"] == "ltrr-shared"
    marker = re.search(r"touch (\S+)", command)
    assert marker is not None and marker.group(1).startswith(home + "/")
    head_pod, _ = _ray_pods(rayservice)[0]
    (wait,) = head_pod["initContainers"]
    assert f"[ -f {marker.group(1)} ]" in wait["command"][-1]


def test_secrets_are_placeholders_that_do_not_leak(docs: list[dict[str, Any]]) -> None:
    secrets = [d for d in docs if d["kind"] == "Secret"]
    values = [v for s in secrets for v in s["stringData"].values()]
    assert len(values) == 3 and all(v.startswith("CHANGE-ME-") for v in values)
    rendered_elsewhere = yaml.safe_dump([d for d in docs if d["kind"] != "Secret"])
    for v in values:
        assert v not in rendered_elsewhere


def test_meilisearch_statefulset_uses_the_secret_and_no_analytics(docs: list[dict[str, Any]]) -> None:
    sts = _one(docs, "StatefulSet", "meilisearch")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "getmeili/meilisearch:v1.21"
    assert "--no-analytics" in container["args"]
    assert _env(container)["MEILI_MASTER_KEY"] == {
        "secretKeyRef": {"name": "meilisearch-master-key", "key": "MEILI_MASTER_KEY"}
    }
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == container["volumeMounts"][0]["name"]


def test_dockerfile_copies_only_paths_that_exist() -> None:
    """k8s/Dockerfile is never built here (no Docker engine); at least its COPY sources must exist."""
    sources = []
    for line in (K8S / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            sources += [w for w in line.split()[1:-1] if not w.startswith("--")]
    assert {"ltrr", "deployments", "graph", "data", "pyproject.toml"} <= set(sources)
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == [], f"k8s/Dockerfile copies paths missing from the repository: {missing}"


def test_network_policy_lets_only_the_gateway_reach_the_api(docs: list[dict[str, Any]]) -> None:
    """Port 9000 from gateway pods only; other traffic into Ray pods only from Ray pods (README, "Security")."""
    policy = _one(docs, "NetworkPolicy", "ltrr-ray-ingress")["spec"]
    rayservice = _one(docs, "RayService", "ltrr")
    rcc = rayservice["spec"]["rayClusterConfig"]
    templates = [rcc["headGroupSpec"]["template"]] + [g["template"] for g in rcc["workerGroupSpecs"]]
    components = {t["metadata"]["labels"]["app.kubernetes.io/component"] for t in templates}
    (selector,) = policy["podSelector"]["matchExpressions"]
    assert set(selector["values"]) == components == {"ray-head", "ray-worker"}
    assert policy["policyTypes"] == ["Ingress"]
    gateway, peers = policy["ingress"]
    assert gateway["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert gateway["from"][0]["podSelector"]["matchLabels"] == {"ltrr.io/gateway": "true"}
    assert "ports" not in peers and peers["from"][0]["podSelector"]["matchExpressions"] == [selector]
