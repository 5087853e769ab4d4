"""The configuration reference and the example file, generated from the schema.

``docs/configuration.md`` and ``config.example.toml`` are the output of this
module; a test regenerates both and compares, so neither can drift from
:mod:`gateway.config` (``make docs`` rewrites them).
"""

from __future__ import annotations

import ipaddress
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway import config

# Where the example file differs from the defaults, so that it works as is for
# a local run (`make run`).
EXAMPLE_VALUES: dict[str, Any] = {"dev_outbox.enabled": True}

_VALIDATOR_TYPES = {
    config._parse_listen_list: '"host:port" or a list of them',
    config._parse_hostport: '"host:port"',
    config._parse_path: "path",
    config._parse_existing_file: "path to a file",
    config._parse_hostname: "host name",
    config._parse_network: "IP network (CIDR)",
    config._parse_ldap_url: "LDAP URL",
}


def _sections(
    model: type[BaseModel], prefix: str = ""
) -> Iterator[tuple[str, type[BaseModel], bool]]:
    """(dotted name, model, is an array of tables) for ``model`` and every table below it."""
    yield prefix, model, False
    for name, field in model.model_fields.items():
        sub, many = _submodel(field)
        if sub is not None:
            dotted = f"{prefix}.{name}" if prefix else name
            if many:
                yield dotted, sub, True
            else:
                yield from _sections(sub, dotted)


def _submodel(field: FieldInfo) -> tuple[type[BaseModel] | None, bool]:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None, False


def _options(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        if _submodel(field)[0] is None:
            yield name, field


def _type_name(field: FieldInfo) -> str:
    for meta in field.metadata:
        func = getattr(meta, "func", None)
        if func in _VALIDATOR_TYPES:
            return _VALIDATOR_TYPES[func]
        if meta is config.SECONDS:
            return "number (seconds)"
    return _annotation_name(field.annotation)


def _annotation_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f'"{value}"' for value in typing.get_args(annotation))
    if origin is typing.Annotated:
        for meta in annotation.__metadata__:
            func = getattr(meta, "func", None)
            if func in _VALIDATOR_TYPES:
                return _VALIDATOR_TYPES[func]
        return _annotation_name(typing.get_args(annotation)[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"list, each {_annotation_name(item)}"
    names: dict[object, str] = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
    }
    return names.get(annotation, str(annotation))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return f"{value:_}" if isinstance(value, int) and value >= 100_000 else str(value)
    if value is None:
        return '""'
    if isinstance(value, list | tuple) and not isinstance(value, config.HostPort):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(
        value, config.HostPort | Path | ipaddress.IPv4Network | ipaddress.IPv6Network | str
    ):
        text = str(value)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML form for {value!r}")


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


_RESTART = "Restart to change."


def _description(model: type[BaseModel], option: str, field: FieldInfo) -> str:
    """The option's description, and whether a reload (SIGHUP) leaves it as it was."""
    text = field.description or ""
    if option in getattr(model, "restart_only", ()):
        return f"{text} {_RESTART}".strip()
    return text


def markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `gateway/config.py` by `sealgate config-reference`; do not edit by hand",
        "(`make docs` regenerates it). Sealgate reads one TOML file (`sealgate serve -c FILE`);",
        "`sealgate check-config FILE` reports every problem in it at once. Unknown keys are",
        "errors. Relative paths are resolved against the directory of the configuration file.",
        "SIGHUP (`systemctl reload sealgate`) applies every option except those marked",
        f"*{_RESTART}* A changed one of those is logged by name and keeps its running value.",
        "",
    ]
    for name, model, many in _sections(config.Config):
        if not name:
            continue
        lines += [f"## `[[{name}]]`" if many else f"## `[{name}]`", "", _doc(model), ""]
        lines += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
        for option, field in _options(model):
            default = "required" if field.is_required() else f"`{toml_value(field.default)}`"
            description = _description(model, option, field).replace("|", "\\|")
            description = description.replace(_RESTART, f"*{_RESTART}*")
            lines.append(f"| `{option}` | {_type_name(field)} | {default} | {description} |")
        lines.append("")
    return "\n".join(lines)


def example_toml() -> str:
    lines = [
        "# Sealgate configuration: every option with its default, documented.",
        "# Generated from gateway/config.py (`make docs`); docs/configuration.md has the same",
        "# reference as tables. As it is, this file runs Sealgate on loopback with a",
        "# development outbox standing in for the upstream MTA (`make run`).",
        "# Relative paths are resolved against the directory of this file.",
        f'# SIGHUP applies every option but those marked "{_RESTART}"',
    ]
    for name, model, many in _sections(config.Config):
        if not name:
            continue
        lines += ["", *_comment(_doc(model))]
        prefix = "# " if many else ""
        lines.append(f"{prefix}[[{name}]]" if many else f"[{name}]")
        for option, field in _options(model):
            if option in getattr(model, "deprecated", {}):
                continue  # accepted for one release, but a new file should not set it
            key = f"{name}.{option}"
            lines += _comment(_description(model, option, field))
            if many:
                lines.append(f"# {option} = {_placeholder(key, field)}")
                continue
            default = toml_value(field.default)
            if key in EXAMPLE_VALUES:
                lines.append(f"# Default: {option} = {default}")
                lines.append(f"{option} = {toml_value(EXAMPLE_VALUES[key])}")
            else:
                lines.append(f"{option} = {default}")
    return "\n".join(lines) + "\n"


# What an entry of an array of tables looks like, where its option has no default.
_ENTRY_EXAMPLES = {
    "smtp.auth.users.name": '"relay"',
    "smtp.auth.users.password_hash": '"$argon2id$v=19$m=65536,t=3,p=4$..."',
    "sso.providers.name": '"corp"',
    "sso.providers.issuer": '"https://login.example.org/realms/corp"',
    "sso.providers.client_id": '"sealgate"',
    "sso.providers.domains": '["example.org"]',
}


def _placeholder(key: str, field: FieldInfo) -> str:
    if key in _ENTRY_EXAMPLES:
        return _ENTRY_EXAMPLES[key]
    return '""' if field.is_required() else toml_value(field.default)


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width=86)] if text else []
