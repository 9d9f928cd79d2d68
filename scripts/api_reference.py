"""Write the documentation site's API reference (docs/reference/api.md) from openapi.yaml.

    .venv/bin/python scripts/api_reference.py          # rewrites docs/reference/api.md
    .venv/bin/python scripts/api_reference.py --check  # exit 1 when the page differs

openapi.yaml is the source (regenerated from the code with `python -m app.openapi`);
the page is generated so that it cannot say something else: tests/docs/test_site.py
fails when it drifts. Schemas get explicit anchors (`schema-<name>`) so that the
operations can link to them and `mkdocs build --strict` checks those links.
"""

import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENAPI = os.path.join(ROOT, "openapi.yaml")
PAGE = os.path.join(ROOT, "docs", "reference", "api.md")
METHODS = ("get", "put", "post", "delete", "patch")


def text(value) -> str:
    """A description as one Markdown line: no raw HTML (`<key>` is text), no table breaks."""
    value = " ".join(str(value).split())
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def schema_anchor(name: str) -> str:
    return "schema-" + name.lower()


def type_of(schema: dict) -> str:
    """A schema's type in a few words, linking to the named schemas it uses."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{schema_anchor(name)})"
    for combiner in ("oneOf", "anyOf", "allOf"):
        if combiner in schema:
            return " or ".join(type_of(part) for part in schema[combiner])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if "enum" in schema:
        return f"{kind}: " + ", ".join(f"`{value}`" for value in schema["enum"])
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {type_of(schema['additionalProperties'])}"
    return kind + (" or null" if schema.get("nullable") else "")


def body_schemas(content: dict) -> str:
    return ", ".join(f"{type_of(media.get('schema', {}))} ({media_type})" for media_type, media in content.items())


def operation_lines(spec: dict, path: str, method: str, operation: dict, shared_parameters: list) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if operation.get("summary"):
        lines += [text(operation["summary"]), ""]
    if operation.get("description"):
        lines += [text(operation["description"]), ""]
    parameters = shared_parameters + operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for parameter in parameters:
            lines.append(f"| `{parameter['name']}` | {parameter['in']} | {type_of(parameter.get('schema', {}))} | "
                         f"{'yes' if parameter.get('required') else 'no'} | {text(parameter.get('description', ''))} |")
        lines.append("")
    if "requestBody" in operation:
        body = operation["requestBody"]
        lines += [f"Request body{' (required)' if body.get('required') else ''}: "
                  f"{body_schemas(body.get('content', {}))}", ""]
    lines += ["| status | description | body |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        if "$ref" in response:
            response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        lines.append(f"| {status} | {text(response.get('description', ''))} | "
                     f"{body_schemas(response.get('content', {}))} |")
    return lines + [""]


def schema_lines(name: str, schema: dict) -> list[str]:
    lines = [f"### {name} {{ #{schema_anchor(name)} }}", ""]
    if schema.get("description"):
        lines += [text(schema["description"]), ""]
    properties = schema.get("properties")
    if not properties:
        return lines + [f"Type: {type_of(schema)}", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, field_schema in properties.items():
        lines.append(f"| `{field}` | {type_of(field_schema)} | {'yes' if field in required else 'no'} | "
                     f"{text(field_schema.get('description', ''))} |")
    return lines + [""]


def render(spec: dict) -> str:
    info = spec["info"]
    lines = ["<!-- Generated from openapi.yaml by scripts/api_reference.py: do not edit by hand. -->", "",
             "# API reference", "",
             f"{text(info['title'])} {info['version']} (OpenAPI {spec['openapi']}). {text(info.get('description', ''))}",
             "",
             "The running service serves the same document at `/openapi.json` and Swagger UI at `/docs`.", ""]
    schemes = spec.get("components", {}).get("securitySchemes", {})
    if schemes:
        lines += ["Authentication: " + "; ".join(
            f"{name} ({scheme.get('type')}{', ' + scheme['in'] + ' `' + scheme['name'] + '`' if 'in' in scheme else ''}"
            f"{', ' + scheme['scheme'] if 'scheme' in scheme else ''})" for name, scheme in schemes.items()) + ".", ""]
    operations: dict[str, list] = {tag["name"]: [] for tag in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                for tag in item[method].get("tags", ["other"]):
                    operations.setdefault(tag, []).append((path, method, item[method], item.get("parameters", [])))
    descriptions = {tag["name"]: tag.get("description", "") for tag in spec.get("tags", [])}
    for tag, entries in operations.items():
        if not entries:
            continue
        lines += [f"## {tag}", ""]
        if descriptions.get(tag):
            lines += [text(descriptions[tag]), ""]
        for path, method, operation, shared in entries:
            lines += operation_lines(spec, path, method, operation, shared)
    lines += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        lines += schema_lines(name, schema)
    while lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def rendered() -> str:
    with open(OPENAPI) as f:
        return render(yaml.safe_load(f))


def main(arguments: list[str]) -> int:
    page = rendered()
    if "--check" in arguments:
        with open(PAGE) as f:
            if f.read() != page:
                print(f"{PAGE} differs from openapi.yaml: run .venv/bin/python scripts/api_reference.py",
                      file=sys.stderr)
                return 1
        return 0
    os.makedirs(os.path.dirname(PAGE), exist_ok=True)
    with open(PAGE, "w") as f:
        f.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
