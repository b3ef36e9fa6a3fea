"""apimachinery's string checks KubeRay uses (DNS-1035 names, label keys and values), Go's text, versions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from common.kuberay_rules.base import Out, as_str

MAX_RAYCLUSTER_NAME_LENGTH: Final = 53  # utils/constant.go MaxRayClusterNameLength
MAX_RAYJOB_NAME_LENGTH: Final = MAX_RAYCLUSTER_NAME_LENGTH - 6  # MaxRayJobNameLength = 47
GENERATE_NAME_MAX_PREFIX: Final = 58  # apiserver names.SimpleNameGenerator: base[:58] + 5 random characters

# k8s.io/apimachinery v0.36.0 (the version KubeRay v1.7.0 builds with): util/validation and validate/content.
_DNS1035_FMT: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG: Final = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                       "alphabetic character, and end with an alphanumeric character")
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG: Final = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                                 "'-' or '.', and must start and end with an alphanumeric character")
_LABEL_KEY_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG: Final = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                         "alphanumeric character")
_LABEL_VALUE_FMT: Final = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_MSG: Final = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                           "'.', and must start and end with an alphanumeric character")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, byte for byte (note its double space before `or`)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{example}', "
    return msg + f"regex used for validation is '{fmt}')"


def dns1035_label_errors(value: str) -> list[str]:
    """validation.IsDNS1035Label."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_FMT, value):
        errs.append(_regex_error(_DNS1035_MSG, _DNS1035_FMT, "my-name", "abc-123"))
    return errs


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 bytes")
    if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def label_key_errors(value: str) -> list[str]:
    """content.IsLabelKey (validation.IsQualifiedName)."""
    errs: list[str] = []
    parts = value.split("/")
    key_error = _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in _dns1123_subdomain_errors(prefix))
    else:
        return [f"a valid label key {key_error} with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_KEY_FMT, name):
        errs.append("name part " + key_error)
    return errs


def label_value_errors(value: str) -> list[str]:
    """content.IsLabelValue."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def go_list(items: Sequence[str]) -> str:
    """Go's %v of a []string."""
    return "[" + " ".join(items) + "]"


def go_quote(text: str) -> str:
    """Go's %q of a plain string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_version(text: str) -> tuple[int, ...] | str:
    """version.ParseGeneric: the components, or Go's error text."""
    m = re.match(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$", text, re.DOTALL)
    if m is None:
        return f"could not parse {go_quote(text)} as version"
    components = m.group(1).split(".")
    if len(components) < 2:
        return f"illegal version string {go_quote(text)}"
    if components[0].startswith("0") and components[0] != "0":
        return f"illegal zero-prefixed version component {go_quote(components[0])} in {go_quote(text)}"
    return tuple(int(c) for c in components)


def version_less(have: tuple[int, ...], need: tuple[int, ...]) -> bool:
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def generated_name_sample(meta: Mapping[str, Any]) -> str:
    """The name KubeRay will see: ``metadata.name``, or for a generateName object the shape the apiserver
    gives it (the prefix cut to 58 characters plus 5 lowercase alphanumerics; ``x`` stands for them)."""
    name = as_str(meta.get("name"))
    if name:
        return name
    prefix = as_str(meta.get("generateName"))
    return prefix[:GENERATE_NAME_MAX_PREFIX] + "xxxxx" if prefix else ""


def name_problems(out: Out, meta: Mapping[str, Any], kind: str, limit: int, prefix: str) -> None:
    """ValidateRayJobMetadata / ValidateRayClusterMetadata: the length and the DNS-1035 rule, judged on the name
    the apiserver will give the object."""
    name = generated_name_sample(meta)
    path = "metadata.name" if as_str(meta.get("name")) else "metadata.generateName"
    function = f"Validate{kind}Metadata"
    if len(name) > limit:
        out.add(function, path, f"{prefix}{kind} name should be no more than {limit} characters")
    errs = dns1035_label_errors(name)
    if errs:
        out.add(function, path, f"{prefix}{kind} name should be a valid DNS1035 label: {go_list(errs)}")
