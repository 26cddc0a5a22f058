"""config/README.md, generated from the config schema: every key with its type, default and description.

    python -m upt.config_docs > config/README.md      (make config-docs)

The schema (workflow/schemas/config.schema.yaml) is the one place a key is defined and described;
``tests/test_packaging.py`` checks that config/README.md is what this module writes, so the page
cannot go stale. A key without a ``description`` is refused, naming the key.

Each object of the schema's ``$defs`` gets one section (an arm's keys are listed once, not under
``base``, every ``arms.<name>`` and ``datasets.<name>.base``); objects written inline appear as
dotted keys in the section of the object that holds them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from upt.errors import UptError

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"

HEADER = """\
# Configuration

<!-- Generated from workflow/schemas/config.schema.yaml by `python -m upt.config_docs`
     (`make config-docs`); edit the schema's descriptions, not this file. -->

{description}

The workflow reads `config/config.yaml` (the default study); `config/pdebench.yaml` and the tiny
`.test/config.yaml` follow the same schema. Pass another file with `snakemake --configfile FILE`.
`<name>` stands for a name of your choosing (a dataset, an arm, a stage); `key[].sub` is a key of
each entry of the list `key`.
"""

SECTIONS = {  # $defs name -> (title, where it is used)
    "dataset": ("Dataset", "`datasets.<name>`"),
    "generate": ("Generated source", "`datasets.<name>.source.generate`"),
    "download": ("Downloaded source", "`datasets.<name>.source.download`"),
    "arm": ("Arm", "`base`, `arms.<name>` and `datasets.<name>.base`"),
    "stage": ("Stage settings", "`<arm>.training` and `<arm>.stages.<stage>` (the latter over the former)"),
}


def _anchor(name: str) -> str:
    return SECTIONS[name][0].lower().replace(" ", "-")


def _ref(schema: dict) -> str | None:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else None


def _type(schema: dict) -> str:
    """The kind of value a key takes, in words (links for the objects of other sections)."""
    if (ref := _ref(schema)) is not None:
        return f"[{SECTIONS[ref][0].lower()}](#{_anchor(ref)})"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "oneOf" in schema:  # alternatives told apart by their keys: name each one's
        return " or ".join(_alternative(option) for option in schema["oneOf"])
    types = schema.get("type", "any")
    types = types if isinstance(types, list) else [types]
    words = []
    for kind in types:
        if kind == "array":
            items = schema.get("items", {})
            limits = _limits(items)
            words.append(f"list of {_type(items)}{f' {limits}' if limits else ''}")
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            value = schema["additionalProperties"]
            limits = _limits(value)
            words.append(f"map of name to {_type(value)}{f' {limits}' if limits else ''}")
        else:
            words.append(kind)
    return " or ".join(words)


def _alternative(schema: dict) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return _type(schema)
    return "{" + ", ".join(f"`{key}`: {_type(value)}" for key, value in properties.items()) + "}"


def _limits(schema: dict) -> str:
    """The range of a number, the length of a list or string, the size of a map."""
    signs = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    parts = [f"{sign} {schema[key]}" for key, sign in signs.items() if key in schema]
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and low == high:
        parts.append(_count("exactly", low, "item"))
    else:
        parts += [_count(word, schema[key], "item") for key, word in (("minItems", "at least"), ("maxItems", "at most"))
                  if key in schema]
    parts += [_count("at least", schema["minProperties"], "key")] if "minProperties" in schema else []
    parts += [_count("at least", schema["minLength"], "character")] if "minLength" in schema else []
    return ", ".join(parts)


def _count(word: str, n: int, noun: str) -> str:
    return f"{word} {n} {noun}{'' if n == 1 else 's'}"


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and ``<`` outside `code` shown as such (Markdown
    would take <Filename> for an HTML tag)."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


def _rows(properties: dict, required: list, prefix: str, where: str, missing: list) -> list[str]:
    rows = []
    for key, prop in properties.items():
        path = f"{prefix}{key}"
        description = prop.get("description")
        if not description:
            missing.append(f"{where}: {path}")
            description = ""
        default = (f"`{json.dumps(prop['default'])}`" if "default" in prop
                   else "required" if key in required else "")
        kind = _type(prop)
        if limits := _limits(prop):
            kind += f" ({limits})"
        rows.append(f"| `{path}` | {kind} | {default} | {_cell(description)} |")
        if _ref(prop) is None and isinstance(prop.get("properties"), dict):  # an inline object: its keys
            rows += _rows(prop["properties"], prop.get("required", []), f"{path}.", where, missing)
        items = prop.get("items", {})
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):  # a list of objects
            rows += _rows(items["properties"], items.get("required", []), f"{path}[].", where, missing)
    return rows


def _table(title: str, used: str | None, schema: dict, where: str, missing: list) -> str:
    lines = [f"## {title}", ""]
    if used is not None:
        lines += [f"Used as {used}.", ""]
    if schema.get("description") and where != "top level":
        lines += [_cell(schema["description"]), ""]
    lines += ["| key | value | default | description |", "| --- | --- | --- | --- |"]
    lines += _rows(schema.get("properties", {}), schema.get("required", []), "", where, missing)
    return "\n".join(lines) + "\n"


def render(schema: dict) -> str:
    """The Markdown page for ``schema``; raises UptError naming every key without a description."""
    missing: list[str] = []
    defs = schema.get("$defs", {})
    unknown = sorted(set(defs) - set(SECTIONS))
    if unknown:
        raise UptError(f"{SCHEMA}: $defs {', '.join(unknown)} have no section in upt/config_docs.py SECTIONS")
    parts = [HEADER.format(description=_cell(schema.get("description", ""))),
             _table("Top level", None, schema, "top level", missing)]
    parts += [_table(title, used, defs[name], f"$defs.{name}", missing)
              for name, (title, used) in SECTIONS.items() if name in defs]
    if missing:
        raise UptError(f"{SCHEMA}: keys without a description: {'; '.join(missing)}")
    return "\n".join(parts)


def main() -> None:
    try:
        sys.stdout.write(render(yaml.safe_load(SCHEMA.read_text())))
    except UptError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
