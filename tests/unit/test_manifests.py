"""What we ship, checked statically: the scheduler configurations against upstream's v1/v1beta3 schema, the
kustomizations against each other, and the Dockerfile's properties.

These tests read files; none builds an image or starts a component. The scheduler configuration v1beta1 is
run in the real kube-scheduler 1.20 and the kustomizations are applied to the real apiserver by
tests/cluster/test_install.py; kube-scheduler >= 1.24 cannot be built here, so v1 and v1beta3 are checked
field by field against tests/data/kubescheduler-config-schema.json (derived from upstream's types.go, cited
there) and the upstream validation rules that concern the fields we use.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.quota_tree import QuotaTree

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SCHEDULER = MANIFESTS / "scheduler"
SCHEMA = json.loads((ROOT / "tests" / "data" / "kubescheduler-config-schema.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

Obj = dict[str, Any]


def load_all(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def load_one(path: Path) -> Obj:
    (doc,) = load_all(path)
    return doc


def kustomization(directory: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return load_one(directory / name)
    raise AssertionError(f"{directory} has no kustomization file")


def find(docs: list[Obj], kind: str, name: str) -> Obj:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


# --------------------------------------------------------------------------- the schema checker

_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")  # Go's time.ParseDuration, no sign needed here
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def schema_problems(doc: Any, type_name: str = SCHEMA["root"], path: str = "") -> list[str]:
    """Every field of `doc` that the schema does not know or whose value has the wrong wire type, with its path."""
    problems: list[str] = []
    spec = SCHEMA["types"][type_name]
    if not isinstance(doc, dict):
        return [f"{path or '.'}: expected an object ({type_name}), got {type(doc).__name__}"]
    for field in SCHEMA["required"].get(type_name, []):
        if field not in doc:
            problems.append(f"{path}.{field}: required")
    for key, value in doc.items():
        where = f"{path}.{key}"
        if key not in spec:
            problems.append(f"{where}: unknown field of {type_name}")
            continue
        problems += _value_problems(value, spec[key], where)
    return problems


def _value_problems(value: Any, wire: Any, where: str) -> list[str]:
    if isinstance(wire, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in _value_problems(item, wire[0], f"{where}[{i}]")]
    if wire in SCHEMA["types"]:
        return schema_problems(value, wire, where)
    ok = {
        "string": isinstance(value, str),
        "bytes": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int32": isinstance(value, int) and not isinstance(value, bool),
        "int64": isinstance(value, int) and not isinstance(value, bool),
        "float32": isinstance(value, int | float) and not isinstance(value, bool),
        "duration": isinstance(value, str) and (value == "0" or bool(_DURATION.match(value))),
        "object": isinstance(value, dict),
    }[wire]
    if not ok:
        return [f"{where}: {value!r} is not a {wire}"]
    if wire in _INT_RANGES and not _INT_RANGES[wire][0] <= value <= _INT_RANGES[wire][1]:
        return [f"{where}: {value} overflows {wire}"]
    return []


def rule_problems(doc: Obj) -> list[str]:
    """The checks of upstream's ValidateKubeSchedulerConfiguration that concern the fields we use."""
    problems = []
    election = doc.get("leaderElection", {})
    if election.get("leaderElect", True) and election.get("resourceLock", "leases") != "leases":
        problems.append('.leaderElection.resourceLock: must be "leases"')
    pct = doc.get("percentageOfNodesToScore")
    if pct is not None and not 0 <= pct <= 100:
        problems.append(f".percentageOfNodesToScore: {pct} not in valid range [0-100]")
    profiles = doc.get("profiles") or []
    names = [p.get("schedulerName") for p in profiles]
    if not profiles:
        problems.append(".profiles: required")
    if any(not n for n in names):
        problems.append(".profiles[].schedulerName: required")
    if len(set(names)) != len(names):
        problems.append(f".profiles[].schedulerName: duplicate in {names}")
    extenders = doc.get("extenders") or []
    for i, ext in enumerate(extenders):
        weight = ext.get("weight", 0)
        if ext.get("prioritizeVerb") and isinstance(weight, int) and weight <= 0:
            problems.append(f".extenders[{i}].weight: must have a positive weight applied to it")
        for j, res in enumerate(ext.get("managedResources") or []):
            if "/" not in res.get("name", "") or res["name"].startswith("kubernetes.io/"):
                problems.append(f".extenders[{i}].managedResources[{j}].name: is an invalid extended resource name")
    binders = sum(1 for ext in extenders if ext.get("bindVerb"))
    if binders > 1:
        problems.append(f".extenders: found {binders} extenders implementing bind; only one extender can implement bind")
    return problems


def version_problems(doc: Obj) -> list[str]:
    if doc.get("apiVersion") not in SCHEMA["versions"]:
        return [f".apiVersion: {doc.get('apiVersion')!r} is not one of {SCHEMA['versions']}"]
    if doc.get("kind") != "KubeSchedulerConfiguration":
        return [f".kind: {doc.get('kind')!r} is not KubeSchedulerConfiguration"]
    return []


SHIPPED_CHECKED = {
    "config-v1.yaml": "kubescheduler.config.k8s.io/v1",
    "config-v1beta3.yaml": "kubescheduler.config.k8s.io/v1beta3",
}


@pytest.mark.parametrize("filename", sorted(SHIPPED_CHECKED))
def test_shipped_config_is_valid_for_upstream_schema_and_rules(filename: str) -> None:
    doc = load_one(SCHEDULER / filename)
    assert doc["apiVersion"] == SHIPPED_CHECKED[filename]
    assert version_problems(doc) + schema_problems(doc) + rule_problems(doc) == []


def _shipped_v1() -> Obj:
    return load_one(SCHEDULER / "config-v1.yaml")


def _set(doc: Obj, path: str, value: Any) -> Obj:
    out = copy.deepcopy(doc)
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    return out


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda d: _set(d, "extenders.0.filterVerbs", "filter"), ".extenders[0].filterVerbs: unknown field",
                     id="a misspelt extender field is refused"),
        pytest.param(lambda d: _set(d, "extenders.0.httpTimeout", "30"), ".extenders[0].httpTimeout: '30' is not a duration",
                     id="a timeout without a unit is refused"),
        pytest.param(lambda d: _set(d, "extenders.0.weight", "1"), ".extenders[0].weight: '1' is not a int64",
                     id="a quoted weight is refused"),
        pytest.param(lambda d: _set(d, "extenders.0.nodeCacheCapable", "true"),
                     ".extenders[0].nodeCacheCapable: 'true' is not a bool", id="a quoted boolean is refused"),
        pytest.param(lambda d: _set(d, "profiles.0.percentageOfNodesToScore", 100),
                     ".profiles[0].percentageOfNodesToScore: unknown field",
                     id="a profile field that 1.25 lacks is refused"),
        pytest.param(lambda d: _set(d, "healthzBindAddress", "0.0.0.0:10251"), ".healthzBindAddress: unknown field",
                     id="a v1beta1-only field is refused"),
        pytest.param(lambda d: _set(d, "percentageOfNodesToScore", 101), ".percentageOfNodesToScore: 101 not in valid range",
                     id="a percentage above 100 is refused"),
        pytest.param(lambda d: _set(d, "extenders", [d["extenders"][0], d["extenders"][0]]), "only one extender can implement bind",
                     id="two binding extenders are refused"),
        pytest.param(lambda d: _set(d, "extenders.0.weight", 0), ".extenders[0].weight: must have a positive weight",
                     id="a prioritizing extender without weight is refused"),
        pytest.param(lambda d: _set(d, "leaderElection.resourceLock", "endpoints"), '.leaderElection.resourceLock: must be "leases"',
                     id="a non-lease lock is refused"),
        pytest.param(lambda d: _set(d, "extenders.0.managedResources", [{"name": "cpu"}]), "invalid extended resource name",
                     id="a managed resource that is not extended is refused"),
        pytest.param(lambda d: _set(d, "apiVersion", "kubescheduler.config.k8s.io/v1beta1"), "is not one of",
                     id="an apiVersion no current cluster serves is refused"),
    ],
)
def test_schema_check_refuses_what_kube_scheduler_refuses(mutate: Any, expected: str) -> None:
    problems = (lambda d: version_problems(d) + schema_problems(d) + rule_problems(d))(mutate(_shipped_v1()))
    assert any(expected in p for p in problems), problems


def _without_version(doc: Obj) -> Obj:
    return {k: v for k, v in doc.items() if k != "apiVersion"}


def test_every_scheduler_config_says_the_same_thing() -> None:
    """v1 (1.25+), v1beta3 (1.24) and v1beta1 (the 1.20 test cluster) differ only in apiVersion: the field
    shapes we use are identical in the three versions, so the test cluster runs what 1.24-1.36 read."""
    docs = {f.name: load_one(f) for f in sorted(SCHEDULER.glob("config-*.yaml"))}
    assert set(docs) == {"config-v1.yaml", "config-v1beta3.yaml", "config-v1beta1.yaml"}
    reference = _without_version(docs["config-v1.yaml"])
    for name, doc in docs.items():
        assert _without_version(doc) == reference, name


def test_scheduler_config_matches_the_extender_and_the_other_manifests() -> None:
    """The configuration names what the rest of the install provides: the extender's Service and verbs, a
    timeout above the gang barrier, the scheduler name the webhook stamps, the Lease its Role allows."""
    cfg = _shipped_v1()
    (ext,) = cfg["extenders"]
    extender_docs = load_all(MANIFESTS / "extender" / "deployment.yaml")
    service = find(extender_docs, "Service", "rayqueue-extender")
    port = service["spec"]["ports"][0]["port"]
    assert ext["urlPrefix"] == f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port}"
    routes = set(re.findall(r'add_post\("/(\w+)"', (ROOT / "extender" / "scheduling.py").read_text()))
    verbs = {ext[k] for k in ("filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb")}
    assert verbs == routes == {"filter", "prioritize", "preempt", "bind"}
    # The extender answers NodeNames only and must see every pod: no managedResources filter, not ignorable.
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False and "managedResources" not in ext
    deployment = find(extender_docs, "Deployment", "rayqueue-extender")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    gang_timeout = float(next(a.split("=", 1)[1] for a in args if a.startswith("--gang-timeout=")))
    assert gang_timeout < _seconds(ext["httpTimeout"])
    assert [p["schedulerName"] for p in cfg["profiles"]] == [_literal(kustomization(MANIFESTS), "rayqueue-webhook-settings", "schedulerName")]
    role = find(load_all(SCHEDULER / "deployment.yaml"), "Role", "rayqueue-scheduler-lease")
    assert role["metadata"]["namespace"] == cfg["leaderElection"]["resourceNamespace"]
    assert [cfg["leaderElection"]["resourceName"]] == next(r["resourceNames"] for r in role["rules"] if "resourceNames" in r)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"only whole seconds are expected here, got {duration!r}"
    return float(match.group(1))


# --------------------------------------------------------------------------- the kustomizations


def _literal(kust: Obj, generator: str, key: str) -> str:
    gen = next(g for g in kust.get("configMapGenerator", []) if g["name"] == generator)
    return str(dict(lit.split("=", 1) for lit in gen.get("literals", []))[key])


BASES = ["crds", "rbac", "webhook", "extender", "scheduler"]


def test_root_kustomization_lists_exactly_what_the_per_directory_bases_list() -> None:
    """manifests/kustomization.yaml repeats the per-directory bases as a flat list of files (kustomize 2.0.3
    reads directories only under `bases:`); the two lists must agree, generators included."""
    root = kustomization(MANIFESTS)
    per_dir = [f"{d}/{r}" for d in BASES for r in kustomization(MANIFESTS / d).get("resources", [])]
    assert sorted(root["resources"]) == sorted(per_dir)
    assert len(set(root["resources"])) == len(root["resources"])

    def generators(kust: Obj, prefix: str = "") -> list[Obj]:
        out = []
        for gen in kust.get("configMapGenerator", []):
            gen = copy.deepcopy(gen)
            gen["files"] = [prefix + f for f in gen.get("files", [])]
            out.append(gen)
        return out

    per_dir_generators = [g for d in BASES for g in generators(kustomization(MANIFESTS / d), f"{d}/")]
    key = lambda g: g["name"]  # noqa: E731
    assert sorted(generators(root), key=key) == sorted(per_dir_generators, key=key)


def test_every_manifest_is_installed_or_deliberately_left_out() -> None:
    """A new manifest file cannot be forgotten by `kubectl apply -k manifests/`."""
    listed = set(kustomization(MANIFESTS)["resources"])
    generated = {f for g in kustomization(MANIFESTS)["configMapGenerator"] for f in g.get("files", [])}
    left_out = {
        "scheduler/config-v1beta1.yaml",  # Kubernetes 1.19-1.22: the local test cluster only
    }
    files = {
        str(p.relative_to(MANIFESTS)) for p in MANIFESTS.rglob("*.yaml")
        if p.name != "kustomization.yaml" and not str(p.relative_to(MANIFESTS)).startswith(("examples/", "crds/test-only/", "overlays/"))
    }
    assert files == listed | generated | left_out
    for name in listed | generated:
        assert (MANIFESTS / name).is_file(), name


def test_deployments_read_keys_their_kustomization_generates() -> None:
    """Every configMapKeyRef names a generated ConfigMap and one of its keys; a file key names a file there."""
    root = kustomization(MANIFESTS)
    keys = {
        g["name"]: {lit.split("=", 1)[0] for lit in g.get("literals", [])} | {Path(f).name for f in g.get("files", [])}
        for g in root["configMapGenerator"]
    }
    refs = []
    for name in root["resources"]:
        for doc in load_all(MANIFESTS / name):
            if doc["kind"] != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        refs.append((ref["name"], ref["key"]))
                        assert f"$({env['name']})" in " ".join(c.get("command", []) + c.get("args", [])), env
    assert sorted(refs) == [("rayqueue-scheduler-config", "configFile"), ("rayqueue-webhook-settings", "certManagement"),
                            ("rayqueue-webhook-settings", "schedulerName")]
    for name, key in refs:
        assert key in keys[name], (name, key)
    assert _literal(root, "rayqueue-scheduler-config", "configFile") in keys["rayqueue-scheduler-config"]


def test_overlays_change_only_what_their_base_defines() -> None:
    """An overlay's `behavior: merge` may only set keys the base already has, and the 1.24 overlay pairs the
    v1beta3 configuration with a 1.24 kube-scheduler; the extend-default overlay installs no scheduler."""
    overlays = MANIFESTS / "overlays"
    assert sorted(p.name for p in overlays.iterdir()) == ["cert-manager", "extend-default-scheduler",
                                                          "second-scheduler-1.24"]
    for overlay in overlays.iterdir():
        kust = kustomization(overlay)
        allowed = {"bases", "configMapGenerator", "images"}
        if overlay.name == "cert-manager":  # its Issuer and Certificate, and the cainjector annotations
            allowed |= {"resources", "patchesStrategicMerge"}
        assert set(kust) <= allowed, overlay.name
        bases = {str((overlay / b).resolve().relative_to(MANIFESTS)) for b in kust["bases"]}
        assert bases <= set(BASES)
        for gen in kust.get("configMapGenerator", []):
            assert gen["behavior"] == "merge"
            base_kust = next(kustomization(MANIFESTS / b) for b in bases
                             if any(g["name"] == gen["name"] for g in kustomization(MANIFESTS / b).get("configMapGenerator", [])))
            for lit in gen["literals"]:
                key = lit.split("=", 1)[0]
                _literal(base_kust, gen["name"], key)  # raises KeyError if the base has no such key
        images = {i["name"]: i["newTag"] for i in kust.get("images", [])}
        assert images.get("rayqueue") == PYPROJECT["project"]["version"]
    old = kustomization(overlays / "second-scheduler-1.24")
    config_file = _literal(old, "rayqueue-scheduler-config", "configFile")
    assert load_one(SCHEDULER / config_file)["apiVersion"] == "kubescheduler.config.k8s.io/v1beta3"
    tag = next(i["newTag"] for i in old["images"] if i["name"] == "registry.k8s.io/kube-scheduler")
    assert tag.startswith("v1.24.")
    extend = kustomization(overlays / "extend-default-scheduler")
    assert "../../scheduler" not in extend["bases"]
    assert _literal(extend, "rayqueue-webhook-settings", "schedulerName") == "default-scheduler"


def test_rayqueue_image_tag_is_the_project_version() -> None:
    root = kustomization(MANIFESTS)
    assert {i["name"]: i["newTag"] for i in root["images"]}["rayqueue"] == PYPROJECT["project"]["version"]


# --------------------------------------------------------------------------- the Dockerfile (static: not built here)


def _stages() -> list[tuple[str, list[str]]]:
    """(FROM line, instructions) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def test_dockerfile_is_multi_stage_and_its_final_stage_is_lean() -> None:
    """Static check of the Dockerfile's text (no image is built by the tests)."""
    stages = _stages()
    assert len(stages) >= 2
    _, final = stages[-1]
    build_names = {m.group(1) for f, _ in stages[:-1] if (m := re.search(r"\bAS\s+(\S+)", f, re.I))}
    copies_from = {m.group(1) for line in final if (m := re.match(r"COPY\s+--from=(\S+)", line))}
    assert copies_from and copies_from <= build_names, "the final stage takes its files from a build stage"
    final_text = "\n".join(final).lower()
    for tool in ("gcc", "g++", "clang", "build-essential", "make ", "pip install", "apt-get install", "python3-dev"):
        assert tool not in final_text, f"the final stage must not install {tool.strip()}"
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets a USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER (runAsNonRoot can only check a number)"
    for path in ("webhook/deployment.yaml", "extender/deployment.yaml"):
        spec = find(load_all(MANIFESTS / path), "Deployment", f"rayqueue-{Path(path).parent.name}")["spec"]
        ctx = spec["template"]["spec"]["securityContext"]
        assert (ctx["runAsNonRoot"], ctx["runAsUser"], ctx["runAsGroup"]) == (True, int(uid), int(gid or uid))


def test_dockerfile_entry_points_are_the_project_scripts_the_deployments_run() -> None:
    scripts = set(PYPROJECT["project"]["scripts"])
    _, final = _stages()[-1]
    smoke = " ".join(line for line in final if line.startswith("RUN ") and "--help" in line)
    assert set(re.findall(r"([\w-]*rayqueue[\w-]*) --help", smoke)) == scripts, "the image runs every entry point once"
    commands = set()
    for path in ("webhook/deployment.yaml", "extender/deployment.yaml"):
        for doc in load_all(MANIFESTS / path):
            if doc["kind"] == "Deployment":
                commands |= {c["command"][0] for c in doc["spec"]["template"]["spec"]["containers"]}
                assert {c["image"].split(":")[0] for c in doc["spec"]["template"]["spec"]["containers"]} == {"rayqueue"}
    assert commands <= scripts
    assert commands == {"rayqueue-webhook", "rayqueue-extender"}


def test_dockerignore_lets_in_exactly_what_the_build_reads() -> None:
    """The build context is an allow-list: pyproject.toml, its readme and the packages it installs."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert allowed == {"pyproject.toml", PYPROJECT["project"]["readme"]} | packages
    copied = set(re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.M))
    copied_names = {n for line in copied for n in line.split()}
    assert copied_names == allowed


def test_license_is_an_spdx_string() -> None:
    """setuptools >= 77 deprecates the table form (it printed the deprecation on every `pip install`)."""
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    pins = [m for r in PYPROJECT["build-system"]["requires"] if (m := re.match(r"setuptools>=(\d+)", r))]
    assert pins and int(pins[0].group(1)) >= 77



# --------------------------------------------------------------------------- one-command install, certificates


def _rendered(directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR` with the cached kubectl 1.20 (kustomize v2.0.3, the oldest we support)."""
    from devcluster.cluster import default_bin_dir

    kubectl = default_bin_dir() / "kubectl"
    assert kubectl.is_file(), f"{kubectl} missing: run `bash devcluster/build-kube.sh` (it caches the binaries)"
    done = subprocess.run([str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


CONFIG_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def test_the_root_install_holds_both_webhook_configurations_with_an_empty_ca_bundle() -> None:
    """One `apply -k manifests/` registers the webhooks; the webhook fills caBundle, so the manifest never names
    it (a value here would be owned by the applier and reset on every re-apply)."""
    docs = _rendered(MANIFESTS)
    configs = [find(docs, kind, "rayqueue") for kind in CONFIG_KINDS]
    assert [len(c["webhooks"]) for c in configs] == [5, 5]
    assert all("caBundle" not in h["clientConfig"] for c in configs for h in c["webhooks"])
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("rayqueue-webhook-settings"))
    assert settings["data"]["certManagement"] == "self"
    webhook = find(docs, "Deployment", "rayqueue-webhook")["spec"]["template"]["spec"]
    assert "--cert-management=$(CERT_MANAGEMENT)" in webhook["containers"][0]["args"]
    (volume,) = webhook["volumes"]
    assert volume["secret"] == {"secretName": "rayqueue-webhook-tls", "optional": True}, "the pod starts first"


def test_no_webhook_intercepts_kube_system_or_rayqueue_but_the_tree_webhook_which_matches_only_the_tree() -> None:
    """Fail closed, never locked out: the webhook's own pods (namespace rayqueue) and the control plane's
    (kube-system) never wait for the webhook; every other rule fails closed."""
    docs = _rendered(MANIFESTS)
    hooks = [h for kind in CONFIG_KINDS for h in find(docs, kind, "rayqueue")["webhooks"]]
    for hook in hooks:
        if hook["name"] == "elasticquotatrees.validate.rayqueue.io":
            assert [r["resources"] for r in hook["rules"]] == [["elasticquotatrees"]]
            continue
        assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "rayqueue"]} in (
            hook["namespaceSelector"]["matchExpressions"]), hook["name"]
        assert hook["failurePolicy"] == ("Ignore" if hook["name"] == "queueunits.mutate.rayqueue.io" else "Fail")
        assert hook["clientConfig"]["service"] == {"name": "rayqueue-webhook", "namespace": "rayqueue",
                                                   "path": hook["clientConfig"]["service"]["path"], "port": 443}


def test_the_pod_webhooks_see_only_quota_namespaces_and_the_namespace_rules_keep_their_label() -> None:
    """Rules N1-N4 (docs/security.md): the pod and binding rules select namespaces by the quota-namespace label
    (besides excluding kube-system and rayqueue by name), never by a pod label a tenant sets; the Namespace CREATE
    mutation (N3) sees every new namespace; the Namespace UPDATE rule (N2) only labelled ones, and not through the
    status and finalize subresources the namespace controller deletes a namespace with (an outage would block
    deletions); every one fails closed; the webhook may list Namespaces, the extender add labels."""
    docs = _rendered(MANIFESTS)
    hooks = {h["name"]: h for kind in CONFIG_KINDS for h in find(docs, kind, "rayqueue")["webhooks"]}
    by_name = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "rayqueue"]}
    quota = {"key": keys.QUOTA_NAMESPACE_LABEL, "operator": "In", "values": [keys.QUOTA_NAMESPACE_VALUE]}
    pod_hooks = sorted(n for n, h in hooks.items() if any("pods" in r["resources"] for r in h["rules"]))
    assert pod_hooks == ["pods.mutate.rayqueue.io", "pods.validate.rayqueue.io"]
    for name in pod_hooks:
        assert "objectSelector" not in hooks[name], name
        assert hooks[name]["namespaceSelector"] == {"matchExpressions": [by_name, quota]}, name
        assert hooks[name]["failurePolicy"] == "Fail", name
    create = hooks["namespaces.mutate.rayqueue.io"]
    assert create["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"],
                                "operations": ["CREATE"], "scope": "Cluster"}]
    assert "objectSelector" not in create and create["namespaceSelector"] == {"matchExpressions": [by_name]}
    assert (create["failurePolicy"], create["reinvocationPolicy"]) == ("Fail", "IfNeeded")
    update = hooks["namespaces.validate.rayqueue.io"]
    assert update["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"],
                                "resources": ["namespaces"],
                                "operations": ["UPDATE"], "scope": "Cluster"}]
    assert update["objectSelector"] == {"matchExpressions": [quota]} and update["failurePolicy"] == "Fail"
    assert update["namespaceSelector"] == {"matchExpressions": [by_name]}
    assert "namespaceSelector" not in hooks["elasticquotatrees.validate.rayqueue.io"]
    webhook_rules = find(docs, "ClusterRole", "rayqueue-webhook")["rules"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]} in webhook_rules
    extender_rules = find(docs, "ClusterRole", "rayqueue-extender")["rules"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "patch"]} in extender_rules


def test_the_example_namespaces_carry_the_quota_namespace_label_before_the_tree_binds_them() -> None:
    """Rule N1 refuses a tree binding an unlabelled namespace, so the example labels its Namespaces, listed first."""
    docs = load_all(MANIFESTS / "examples" / "elasticquotatree.yaml")
    tree_at = next(i for i, d in enumerate(docs) if d["kind"] == "ElasticQuotaTree")
    labelled = {d["metadata"]["name"] for d in docs[:tree_at] if d["kind"] == "Namespace"
                and d["metadata"].get("labels", {}).get(keys.QUOTA_NAMESPACE_LABEL) == keys.QUOTA_NAMESPACE_VALUE}
    assert set(QuotaTree.parse(docs[tree_at]).namespace_bindings()) == labelled


def test_the_webhook_may_touch_only_its_own_secret_and_configurations() -> None:
    """RBAC as narrow as RBAC allows: create (which cannot be limited by name) on Secrets of namespace rayqueue;
    get/update of the one Secret, get/patch of the two configurations, by resourceNames; no list, no watch."""
    docs = _rendered(MANIFESTS)
    role = find(docs, "Role", "rayqueue-webhook-certs")
    assert role["metadata"]["namespace"] == "rayqueue"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rayqueue-webhook-tls"], "verbs": ["get", "update"]},
    ]
    cluster_role = find(docs, "ClusterRole", "rayqueue-webhook-configurations")
    assert cluster_role["rules"] == [{"apiGroups": ["admissionregistration.k8s.io"],
                                      "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
                                      "resourceNames": ["rayqueue"], "verbs": ["get", "patch"]}]
    bound = {(d["kind"], d["roleRef"]["name"]) for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
             and {"kind": "ServiceAccount", "name": "rayqueue-webhook", "namespace": "rayqueue"} in d["subjects"]}
    assert bound == {("RoleBinding", "rayqueue-webhook-certs"), ("ClusterRoleBinding", "rayqueue-webhook-configurations"),
                     ("ClusterRoleBinding", "rayqueue-webhook")}
    assert not any("secret" in r for rule in find(docs, "ClusterRole", "rayqueue-webhook")["rules"] for r in rule["resources"])


def test_cert_manager_overlay_issues_the_certificate_and_starts_the_webhook_on_files() -> None:
    """overlays/cert-manager, rendered: an Issuer and a Certificate writing rayqueue-webhook-tls for the Service's
    names, cainjector's annotation on both configurations (nothing else of them changed), certManagement=files;
    everything else is the root install's."""
    docs = _rendered(MANIFESTS / "overlays" / "cert-manager")
    root = _rendered(MANIFESTS)
    cert = find(docs, "Certificate", "rayqueue-webhook")
    service = find(docs, "Service", "rayqueue-webhook")
    assert cert["spec"]["secretName"] == "rayqueue-webhook-tls"
    assert f"rayqueue-webhook.{service['metadata']['namespace']}.svc" in cert["spec"]["dnsNames"]
    assert find(docs, "Issuer", cert["spec"]["issuerRef"]["name"])["spec"] == {"selfSigned": {}}
    for kind in CONFIG_KINDS:
        ours, base = find(docs, kind, "rayqueue"), find(root, kind, "rayqueue")
        assert ours["metadata"].pop("annotations") == {"cert-manager.io/inject-ca-from": "rayqueue/rayqueue-webhook"}
        assert ours == base
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("rayqueue-webhook-settings"))
    assert settings["data"] == {"certManagement": "files", "schedulerName": "rayqueue-scheduler"}

    def key(d: Obj) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    same = lambda d: d["kind"] not in ("ConfigMap", "Deployment", *CONFIG_KINDS)  # noqa: E731  (hash-named, or shown above)
    assert sorted(map(key, filter(same, root))) == sorted(k for k in map(key, filter(same, docs))
                                                         if k[0] not in ("Certificate", "Issuer"))
