"""What `kubectl kustomize DIR` renders, for the subset deploy/kubernetes uses:
`resources` (files and folders with a kustomization.yaml of their own) and
`patches` that are JSON 6902 operation lists with a target (kind, and a name or
not). No kustomize binary is needed in CI; anything else in a kustomization is
refused, so a new feature there fails here instead of being rendered wrong.
(Checked once against kubectl kustomize v5.5.0: the same objects.)"""

import copy
import os

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "resources", "patches"}


def render(folder: str) -> list[dict]:
    with open(os.path.join(folder, "kustomization.yaml")) as file:
        kustomization = yaml.safe_load(file)
    unknown = set(kustomization) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"{folder}: kustomization keys this renderer does not know: {sorted(unknown)}")
    objects = []
    for resource in kustomization.get("resources", []):
        path = os.path.normpath(os.path.join(folder, resource))
        if os.path.isdir(path):
            objects += render(path)
        else:
            objects += load(path)
    for patch in kustomization.get("patches", []):
        with open(os.path.join(folder, patch["path"])) as file:
            operations = yaml.safe_load(file)
        target = patch["target"]
        matched = [obj for obj in objects if obj["kind"] == target["kind"]
                   and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]]
        if not matched:
            raise ValueError(f"{folder}: patch {patch['path']} matches nothing")
        for obj in matched:
            for operation in operations:
                apply(obj, operation)
    return objects


def load(path: str) -> list[dict]:
    with open(path) as file:
        return [document for document in yaml.safe_load_all(file) if document]


def apply(obj: dict, operation: dict) -> None:
    """One RFC 6902 operation (add, replace, remove) on `obj`, in place."""
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index]
        else:
            raise ValueError(f"unsupported op {op}")
        return
    if op in ("add", "replace"):
        if op == "replace" and last not in node:
            raise KeyError(f"replace of a missing {operation['path']}")
        node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del node[last]
    else:
        raise ValueError(f"unsupported op {op}")
