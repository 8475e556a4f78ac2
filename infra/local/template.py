"""Reading template.yaml the way CloudFormation would, so the local stack is derived from it.

PyYAML's safe loader rejects CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub`` ...);
:class:`CfnLoader` turns each into its long form (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``). The
:class:`Resolver` then evaluates the intrinsic functions against the physical names the local stack
gave to the resources, the parameters' defaults (or overrides) and the pseudo parameters. Anything it
cannot evaluate raises :class:`Unresolvable`, and the caller decides whether that matters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from infra.local.services import ACCOUNT_ID, REGION


class Unresolvable(ValueError):
    """An intrinsic function the local stack cannot evaluate (unknown attribute, import, ...)."""


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # PyYAML may come untyped
    """YAML loader that accepts CloudFormation's short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)
# CloudFormation reads 2010-09-09 as a string, not a date
CfnLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_template(path: Path | str) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML or JSON)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return data


NO_VALUE: Any = object()  # AWS::NoValue: the property is dropped

FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})


@dataclass
class Template:
    """A parsed template with the queries the local stack needs."""

    data: dict[str, Any]
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | str) -> Template:
        return cls(load_template(path), Path(path))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        res: dict[str, dict[str, Any]] = self.data["Resources"]
        return res

    def of_type(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, res in self.resources.items():
            if res.get("Type") in types:
                yield logical_id, res

    def parameter_defaults(self) -> dict[str, Any]:
        return {
            name: spec["Default"]
            for name, spec in (self.data.get("Parameters") or {}).items()
            if isinstance(spec, dict) and "Default" in spec
        }

    def globals_function(self) -> dict[str, Any]:
        g = (self.data.get("Globals") or {}).get("Function") or {}
        return g if isinstance(g, dict) else {}

    def function_property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A function's property, falling back to SAM's Globals.Function like SAM does."""
        props = self.resources[logical_id].get("Properties") or {}
        if name in props:
            return props[name]
        return self.globals_function().get(name, default)

    def function_environment(self, logical_id: str) -> dict[str, Any]:
        """Globals' variables overlaid with the function's own (SAM merges them this way)."""
        merged: dict[str, Any] = {}
        g_env = (self.globals_function().get("Environment") or {}).get("Variables") or {}
        merged.update(g_env)
        props = self.resources[logical_id].get("Properties") or {}
        merged.update((props.get("Environment") or {}).get("Variables") or {})
        return merged


@dataclass
class Resolver:
    """Evaluates intrinsic functions for one local instance of the template."""

    template: Template
    parameters: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> what !Ref returns
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attribute) -> value
    stack_name: str = "nanocmd-local"
    region: str = REGION
    account_id: str = ACCOUNT_ID

    def pseudo(self, name: str) -> Any:
        table: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name not in table:
            raise Unresolvable(f"pseudo parameter {name}")
        return table[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise Unresolvable(f"Ref {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if (logical_id, attribute) in self.attrs:
            return self.attrs[(logical_id, attribute)]
        raise Unresolvable(f"GetAtt {logical_id}.{attribute}")

    def condition(self, name: str) -> bool:
        conditions = self.template.data.get("Conditions") or {}
        if name not in conditions:
            raise Unresolvable(f"condition {name}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic in ``value``; AWS::NoValue entries are dropped from maps/lists."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            fn = self._functions.get(key)
            if fn is not None:
                return fn(self, arg)
        out = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    # -- intrinsic functions
    def _fn_ref(self, arg: Any) -> Any:
        return self.ref(str(self.resolve(arg)))

    def _fn_get_att(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not isinstance(arg, list) or len(arg) != 2:
            raise Unresolvable(f"Fn::GetAtt {arg!r}")
        return self.get_att(str(arg[0]), str(arg[1]))

    _SUB: ClassVar[re.Pattern[str]] = re.compile(r"\$\{([^}]*)\}")

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return self._SUB.sub(repl, str(text))

    def _fn_join(self, arg: Any) -> str:
        sep, items = arg
        return str(sep).join(str(v) for v in self.resolve(items))

    def _fn_select(self, arg: Any) -> Any:
        index, items = self.resolve(arg)
        return items[int(index)]

    def _fn_split(self, arg: Any) -> list[str]:
        sep, text = self.resolve(arg)
        return str(text).split(str(sep))

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, arg: Any) -> bool:
        a, b = self.resolve(arg)
        return str(a) == str(b)

    def _fn_not(self, arg: Any) -> bool:
        (cond,) = arg
        return not self.resolve(cond)

    def _fn_and(self, arg: Any) -> bool:
        return all(self.resolve(c) for c in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self.resolve(c) for c in arg)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(str(arg))

    def _fn_find_in_map(self, arg: Any) -> Any:
        name, key1, key2 = self.resolve(arg)[:3]
        level: Any = self.template.data.get("Mappings") or {}
        for key in (name, key1, key2):
            # YAML may read a key as a number where a parameter gives a string, or the other way
            if isinstance(level, dict) and key in level:
                level = level[key]
            elif isinstance(level, dict) and str(key) in {str(k) for k in level}:
                level = next(v for k, v in level.items() if str(k) == str(key))
            else:
                raise Unresolvable(f"Fn::FindInMap {name}/{key1}/{key2}")
        return level

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(str(self.resolve(arg)).encode()).decode()

    def _fn_to_json_string(self, arg: Any) -> str:
        return json.dumps(self.resolve(arg), separators=(",", ":"))

    def _fn_unsupported(self, arg: Any) -> Any:
        raise Unresolvable(f"intrinsic not supported locally: {arg!r}")

    _functions: ClassVar[dict[str, Callable[[Resolver, Any], Any]]] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_get_att,
        "Fn::Sub": _fn_sub,
        "Fn::Join": _fn_join,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::If": _fn_if,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::And": _fn_and,
        "Fn::Or": _fn_or,
        "Condition": _fn_condition,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::Base64": _fn_base64,
        "Fn::ToJsonString": _fn_to_json_string,
        "Fn::ImportValue": _fn_unsupported,
        "Fn::GetAZs": _fn_unsupported,
        "Fn::Cidr": _fn_unsupported,
    }


def references(value: Any) -> set[str]:
    """Logical ids (and parameter names) that ``value`` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= references(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                target = v.split(".", 1)[0] if isinstance(v, str) else v[0]
                if isinstance(target, str):
                    found.add(target)
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                if isinstance(text, str):
                    for m in Resolver._SUB.finditer(text):
                        name = m.group(1)
                        if not name.startswith("!"):
                            found.add(name.split(".", 1)[0])
                if isinstance(v, list) and len(v) > 1:
                    found |= references(v[1])
            else:
                found |= references(v)
    return found


def dependency_order(template: Template, logical_ids: list[str]) -> list[str]:
    """``logical_ids`` sorted so each comes after the resources it refers to (DependsOn included)."""
    wanted = set(logical_ids)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(lid: str) -> None:
        if state.get(lid) == 2:
            return
        if state.get(lid) == 1:
            raise ValueError(f"circular reference through {lid}")
        state[lid] = 1
        res = template.resources[lid]
        deps = references(res.get("Properties") or {})
        depends_on = res.get("DependsOn") or []
        deps |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        for dep in sorted(deps & wanted):
            visit(dep)
        state[lid] = 2
        order.append(lid)

    for lid in logical_ids:
        visit(lid)
    return order


def closure(template: Template, logical_ids: Iterable[str]) -> set[str]:
    """``logical_ids`` plus every resource they refer to, transitively."""
    seen: set[str] = set()
    stack = list(logical_ids)
    while stack:
        lid = stack.pop()
        if lid in seen or lid not in template.resources:
            continue
        seen.add(lid)
        res = template.resources[lid]
        stack.extend(references(res.get("Properties") or {}))
        depends_on = res.get("DependsOn") or []
        stack.extend([depends_on] if isinstance(depends_on, str) else depends_on)
    return seen


def resource_enabled(template: Template, resolver: Resolver, logical_id: str) -> bool:
    """False when the resource carries a Condition that evaluates false."""
    cond = template.resources[logical_id].get("Condition")
    return True if cond is None else resolver.condition(str(cond))


def as_str(value: Any) -> str:
    """A resolved scalar as CloudFormation would pass it on (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_json_if_str(value: Any) -> Any:
    """RedrivePolicy and friends may be given as a JSON string or a map."""
    if isinstance(value, str):
        return json.loads(value)
    return value


def api_events(template: Template) -> list[tuple[str, str, str]]:
    """(path, METHOD or ANY, function logical id) for every SAM ``Api`` event in the template."""
    routes: list[tuple[str, str, str]] = []
    for logical_id, res in template.of_type(*FUNCTION_TYPES):
        events = (res.get("Properties") or {}).get("Events") or {}
        for ev in events.values():
            if not isinstance(ev, dict) or ev.get("Type") != "Api":
                continue
            props = ev.get("Properties") or {}
            path, method = props.get("Path"), props.get("Method", "ANY")
            if isinstance(path, str) and isinstance(method, str):
                routes.append((path, method.upper(), logical_id))
    return routes


def mapping_get(m: Mapping[str, Any] | None, *keys: str) -> Any:
    """Nested get that tolerates missing levels."""
    cur: Any = m
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur
