"""Checks on deploy/kubernetes/ that schema validation cannot make (run by deploy/check.sh).

- no YAML mapping repeats a key (PyYAML keeps the last one silently; kubectl refuses the file),
- kustomization.yaml lists every manifest but secret.yaml, and only files that exist,
- the ConfigMap's traverse.toml is valid TOML,
- terminationGracePeriodSeconds is above the preStop sleep plus admin.drain_timeout, so Kubernetes
  never kills a relay in the middle of its drain,
- secret.yaml holds placeholders only, and holds every key the pods read from it.

Exits 1 with one line per problem.
"""

import pathlib
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent / "kubernetes"
DEFAULT_DRAIN_TIMEOUT = 60  # admin.drain_timeout's default (Docs/configuration.md)
problems: list[str] = []


class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(path: pathlib.Path) -> list[dict]:
    try:
        return [d for d in yaml.load_all(path.read_text(), Loader=UniqueKeyLoader) if d]
    except yaml.YAMLError as error:
        problems.append(f"{path.name}: {error}")
        return []


documents = {path.name: load(path) for path in sorted(ROOT.glob("*.yaml"))}
resources = [(name, doc) for name, docs in documents.items() for doc in docs]


def find(kind: str) -> list[dict]:
    return [doc for _, doc in resources if doc.get("kind") == kind]


# kustomization.yaml lists every manifest but the placeholder Secret.
kustomization = (documents.get("kustomization.yaml") or [{}])[0]
listed = kustomization.get("resources", [])
expected = sorted(set(documents) - {"kustomization.yaml", "secret.yaml"})
for name in listed:
    if not (ROOT / name).is_file():
        problems.append(f"kustomization.yaml: lists {name}, which does not exist")
if sorted(listed) != expected:
    problems.append(f"kustomization.yaml: resources {sorted(listed)}, expected {expected}")
if "secret.yaml" in listed:
    problems.append("kustomization.yaml: lists secret.yaml, whose values are placeholders")

# traverse.toml in the ConfigMap.
drain_timeout = DEFAULT_DRAIN_TIMEOUT
configmaps = {doc["metadata"]["name"]: doc for doc in find("ConfigMap")}
for name, configmap in configmaps.items():
    for key, text in configmap.get("data", {}).items():
        if key.endswith(".toml"):
            try:
                config = tomllib.loads(text)
                drain_timeout = config.get("admin", {}).get("drain_timeout", drain_timeout)
            except tomllib.TOMLDecodeError as error:
                problems.append(f"configmap {name}: {key}: {error}")

# The Secret: placeholders only.
secrets = {doc["metadata"]["name"]: doc for doc in find("Secret")}
for name, secret in secrets.items():
    if secret.get("data"):
        problems.append(f"secret {name}: use stringData placeholders, not data")
    for key, value in (secret.get("stringData") or {}).items():
        if not str(value).startswith("CHANGE-ME"):
            problems.append(f"secret {name}: {key} is not a CHANGE-ME placeholder")

# Pods: grace period, and every Secret key and ConfigMap they reference.
for workload in find("DaemonSet") + find("Deployment"):
    name = f"{workload['kind'].lower()}/{workload['metadata']['name']}"
    pod = workload["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref.get("key") not in (secrets.get(ref["name"], {}).get("stringData") or {}):
                problems.append(f"{name}: {env['name']} reads {ref['name']}/{ref['key']}, "
                                "which secret.yaml does not define")
        sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if workload["kind"] == "DaemonSet" and grace <= sleep + drain_timeout:
            problems.append(f"{name}: terminationGracePeriodSeconds {grace} must exceed preStop "
                            f"sleep {sleep} + admin.drain_timeout {drain_timeout}")
    for volume in pod.get("volumes", []):
        ref = volume.get("configMap")
        if ref and ref["name"] not in configmaps:
            problems.append(f"{name}: volume {volume['name']} uses ConfigMap {ref['name']}, "
                            "which no manifest defines")

for problem in problems:
    print(f"deploy/kubernetes: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
