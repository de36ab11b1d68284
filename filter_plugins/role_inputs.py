"""Role variables set in an inventory, checked against each role's own argument spec.

site.yml's first play (playbooks/validate.yml) calls ``role_variable_errors`` with every
role-prefixed variable the inventory sets, before any role is loaded: wrong types, values outside
a role's choices and unknown names (a typo such as ``orthanc_htp_port``) are reported as plain
``name: what is wrong; how to fix`` lines, in the same report as the site facts' problems. The
roles keep their ``meta/argument_specs.yml`` as the single declaration (Ansible still checks it
when a role runs alone); this module only reads it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# The roles directory next to this plugin's directory (the project's layout).
ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"
# Every role of site.yml, in order; a variable belongs to the role whose name prefixes it.
ROLES = ("base_hardening", "tls_certs", "ufw_firewall", "openvpn_easyrsa", "orthanc", "log_monitoring")
# Variables with a role's prefix that are not that role's inputs (set by our own playbooks).
NOT_ROLE_INPUTS = ("orthanc_remote_",)


def role_options(roles_dir: str | Path = ROLES_DIR) -> dict[str, dict[str, dict]]:
    """``{role: {variable: spec}}`` from each role's ``meta/argument_specs.yml`` (entry point ``main``)."""
    options: dict[str, dict[str, dict]] = {}
    for role in ROLES:
        path = Path(roles_dir) / role / "meta" / "argument_specs.yml"
        specs = yaml.safe_load(path.read_text()) or {}
        options[role] = dict(specs.get("argument_specs", {}).get("main", {}).get("options") or {})
    return options


def role_of(name: str) -> str | None:
    """The role a variable belongs to by its prefix (the longest matching role name), or None."""
    if name.startswith(NOT_ROLE_INPUTS):
        return None
    matches = [role for role in ROLES if name.startswith(role + "_")]
    return max(matches, key=len) if matches else None


def _show(value: Any, secret: bool) -> str:
    """A value as the admin typed it; never a secret's."""
    if secret:
        return "the value"
    return repr(value) if isinstance(value, str) else str(value)


def _expected(spec: dict) -> str:
    """What a spec accepts, in words: 'a list of str', 'one of: a, b', 'a dict'."""
    kind = spec.get("type", "str")
    if spec.get("choices"):
        return "one of: " + ", ".join(str(c) for c in spec["choices"])
    if kind == "list" and spec.get("elements"):
        return f"a list of {spec['elements']}"
    return {"int": "a whole number", "bool": "true or false", "dict": "a mapping", "float": "a number",
            "path": "a path", "raw": "a value"}.get(kind, f"a {kind}")


def _problems(name: str, value: Any, spec: dict) -> list[str]:
    """Ansible's own findings for one variable, without the 'argument NAME' preamble."""
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    return [str(m).replace(f"argument '{name}' ", "").replace("\n", " ") for m in result.error_messages]


def variable_errors(name: str, value: Any, spec: dict, role: str) -> list[str]:
    """Problems of one role variable against its spec, as ``name: what; fix`` lines."""
    if not _problems(name, value, spec):
        return []
    secret = bool(spec.get("no_log"))
    outer = {k: v for k, v in spec.items() if k in ("type", "choices")}
    if secret or _problems(name, value, outer):
        what = f"{_show(value, secret)} is not {_expected(spec)}"
    else:
        what = "; ".join(_problems(name, value, spec))
    return [f"{name}: {what}; write {_expected(spec)} as roles/{role}/README.md describes, "
            "or remove it to use the default"]


def role_variable_errors(values: dict, roles_dir: str | Path = ROLES_DIR) -> list[str]:
    """Every problem of the role variables an inventory sets, all at once, sorted by name.

    ``values`` maps variable names to their values as the inventory gives them; names without a
    role's prefix are ignored. An unknown name gets the closest known variable of its role.
    """
    options = role_options(roles_dir)
    errors: list[str] = []
    for name in sorted(values or {}):
        role = role_of(str(name))
        if role is None:
            continue
        known = options[role]
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
            fix = (f"did you mean {close[0]}? rename it" if close
                   else f"remove it; roles/{role}/README.md lists the role's variables")
            errors.append(f"{name}: unknown variable of role {role} (a typo?); {fix}")
            continue
        errors += variable_errors(name, values[name], known[name], role)
    return errors


def roles_with_errors(errors: list[str]) -> list[str]:
    """The roles named by ``role_variable_errors`` lines (their own rules wait for these fixes)."""
    return sorted({role for line in errors or [] if (role := role_of(line.split(":", 1)[0]))})


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {
            "role_variable_errors": role_variable_errors,
            "roles_with_errors": roles_with_errors,
        }
