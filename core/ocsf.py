"""OCSF conformance: a record checked against the official compiled schema of the release it claims.

:mod:`core.records` says what a Mamori record may carry (privacy, value shapes); this module says whether the
record is valid OCSF. The schema is the OCSF project's own, compiled with its compiler and shipped as package
data (``core/ocsf_schema/``, see PROVENANCE.txt there), never a hand-written copy of it. The checks follow the
schema's own rules:

* the class exists in the release (``class_uid``), and ``category_uid`` / ``type_uid`` agree with it;
* every attribute is defined for the class or object it sits in (``unmapped`` holds everything else);
* every *required* attribute is present, counting an attribute that belongs to a profile only when that profile
  is listed in ``metadata.profiles``; an attribute of a profile that is not listed is an error;
* value types (``string_t``, ``integer_t``, ``long_t``, ``timestamp_t`` …, with the type's regex, length and range),
  arrays, enums (an ``*_id`` value must be one of the enum's ids) and the enum caption of a set sibling
  (``severity`` is the caption of ``severity_id``, unless the id is 99 "Other");
* the ``at_least_one`` / ``just_one`` constraints of classes and objects.

Pure: the schema is read once from package data; no other I/O, stdlib only.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

CLAIMED_VERSION = "1.8.0"
OTHER = 99


@dataclass(frozen=True)
class Schema:
    """One compiled OCSF release (the keys of the compiled file: classes, objects, profiles, types)."""

    version: str
    classes: Mapping[int, Mapping[str, Any]]
    objects: Mapping[str, Mapping[str, Any]]
    profiles: frozenset[str]
    types: Mapping[str, Mapping[str, Any]]
    # The required attributes of each attribute table of this schema, found once (by the table's id: the tables
    # live as long as the schema), like each type's rules below: 42 % fewer calls a record (docs/performance.md).
    _required: dict[int, tuple[tuple[str, Mapping[str, Any]], ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def required(
        self, attributes: Mapping[str, Mapping[str, Any]]
    ) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        found = self._required.get(id(attributes))
        if found is None:
            found = tuple((k, a) for k, a in attributes.items() if a.get("requirement") == "required")
            self._required[id(attributes)] = found
        return found

    _type_rules: dict[str, TypeRule | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def type_rule(self, type_name: str) -> TypeRule | None:
        """The checks of ``type_name`` (None: not a type of this release), read once."""
        try:
            return self._type_rules[type_name]
        except KeyError:
            spec = self.types.get(type_name)
            rule = TypeRule.of(type_name, spec) if spec is not None else None
            self._type_rules[type_name] = rule
            return rule

    @classmethod
    def from_compiled(cls, doc: Mapping[str, Any]) -> Schema:
        return cls(
            version=str(doc["version"]),
            classes={int(c["uid"]): c for c in doc["classes"].values()},
            objects=doc["objects"],
            profiles=frozenset(doc["profiles"]),
            types=doc["types"],
        )

    def class_name(self, class_uid: int) -> str:
        return str(self.classes[class_uid]["caption"])


@functools.cache
def load_schema(version: str = CLAIMED_VERSION) -> Schema:
    """The compiled schema of ``version`` shipped in ``core/ocsf_schema`` (KeyError-free: FileNotFoundError)."""
    data = resources.files("core").joinpath("ocsf_schema", f"{version}.json.gz").read_bytes()
    return Schema.from_compiled(json.loads(gzip.decompress(data)))


def shipped_versions() -> list[str]:
    return sorted(
        p.name.removesuffix(".json.gz")
        for p in resources.files("core").joinpath("ocsf_schema").iterdir()
        if p.name.endswith(".json.gz")
    )


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Checker:
    def __init__(self, schema: Schema, profiles: frozenset[str]) -> None:
        self.schema = schema
        self.profiles = profiles
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def active(self, attr: Mapping[str, Any]) -> bool:
        """An attribute of a profile counts only when one of its profiles is listed in metadata.profiles."""
        owners = attr.get("profiles")
        return not owners or bool(self.profiles.intersection(owners))

    def check_object(
        self,
        value: Any,
        attributes: Mapping[str, Mapping[str, Any]],
        constraints: Mapping[str, Any] | None,
        path: str,
        what: str,
    ) -> None:
        if type(value) is not dict:
            self.fail(path or "(top)", f"must be an object ({what})")
            return
        prefix = f"{path}." if path else ""
        for key, item in value.items():
            attr = attributes.get(key)
            if attr is None:
                self.fail(f"{prefix}{key}", f"not an attribute of {what} in OCSF {self.schema.version}")
                continue
            if not self.active(attr):
                listed = ", ".join(attr["profiles"])
                self.fail(f"{prefix}{key}", f"belongs to profile {listed}: list it in metadata.profiles")
                continue
            self.check_attribute(item, attr, f"{prefix}{key}")
            sibling = attr.get("sibling")
            enum = attr.get("enum")
            if sibling and enum and sibling in value and str(item) in enum and item != OTHER:
                caption = enum[str(item)]
                if value[sibling] != caption:
                    self.fail(f"{prefix}{sibling}", f"must be {caption!r}, the caption of {key} {item}")
        for key, attr in self.schema.required(attributes):
            if key not in value and self.active(attr):
                self.fail(f"{prefix}{key}", f"required by {what} in OCSF {self.schema.version}")
        for rule, names in (constraints or {}).items():
            present = [n for n in names if n in value]
            if rule == "at_least_one" and not present:
                self.fail(path or "(top)", f"{what} needs at least one of {', '.join(names)}")
            elif rule == "just_one" and len(present) != 1:
                self.fail(path or "(top)", f"{what} needs exactly one of {', '.join(names)}")

    def check_attribute(self, value: Any, attr: Mapping[str, Any], path: str) -> None:
        if attr.get("is_array"):
            if type(value) is not list:
                self.fail(path, "must be an array")
                return
            for i, item in enumerate(value):
                self.check_scalar(item, attr, f"{path}[{i}]")
        else:
            self.check_scalar(value, attr, path)

    def check_scalar(self, value: Any, attr: Mapping[str, Any], path: str) -> None:
        type_name = str(attr.get("type"))
        if type_name == "object_t":
            object_type = str(attr.get("object_type"))
            if object_type == "object":  # the generic object (e.g. unmapped): any JSON object
                if type(value) is not dict:
                    self.fail(path, "must be an object")
                return
            obj = self.schema.objects.get(object_type)
            if obj is None:
                self.fail(path, f"object {object_type} is not in OCSF {self.schema.version}")
                return
            self.check_object(value, obj["attributes"], obj.get("constraints"), path, f"object {object_type}")
            return
        if not self.check_type(value, type_name, path):
            return
        enum = attr.get("enum")
        if enum is not None and str(value) not in enum:
            self.fail(path, f"{value!r} is not one of the enum values {sorted(enum, key=_enum_order)}")

    def check_type(self, value: Any, type_name: str, path: str) -> bool:
        rule = self.schema.type_rule(type_name)
        if rule is None:
            self.fail(path, f"unknown type {type_name}")
            return False
        if rule.check is None:
            # A derived type of a derived type (e.g. port_t -> integer_t): check the parent, then the rules.
            if not self.check_type(value, rule.parent, path):
                return False
        elif not rule.check(value):
            self.fail(path, f"must be of type {type_name}")
            return False
        if rule.plain:
            return True
        if rule.regex and type(value) is str and not rule.regex.search(value):
            self.fail(path, f"does not match the pattern of {type_name}")
            return False
        if rule.max_len and type(value) is str and len(value) > int(rule.max_len):
            self.fail(path, f"longer than {rule.max_len} characters ({type_name})")
            return False
        value_range = rule.value_range
        if value_range and type(value) in (int, float) and not value_range[0] <= value <= value_range[1]:
            self.fail(path, f"outside {value_range} ({type_name})")
            return False
        if rule.values is not None and value not in rule.values:
            self.fail(path, f"must be one of {rule.values} ({type_name})")
            return False
        return True


class TypeRule(NamedTuple):
    """One OCSF type's checks, read from its schema entry once."""

    check: Callable[[Any], bool] | None  # the base type's check; None: check ``parent`` first
    parent: str
    regex: re.Pattern[str] | None
    max_len: Any
    value_range: Any
    values: Any
    plain: bool  # no pattern, length, range or value list: the base check is all

    @classmethod
    def of(cls, type_name: str, spec: Mapping[str, Any]) -> TypeRule:
        base = spec.get("type") or type_name
        if base == "timestamp_t":  # pragma: no cover - timestamp_t derives from long_t in every release
            base = "long_t"
        regex, max_len, value_range, values = (
            spec.get("regex"),
            spec.get("max_len"),
            spec.get("range"),
            spec.get("values"),
        )
        return cls(
            _BASE_TYPES.get(base),
            base,
            _regex(regex) if regex else None,
            max_len,
            value_range,
            values,
            not regex and not max_len and not value_range and values is None,
        )


_BASE_TYPES: dict[str, Callable[[Any], bool]] = {
    "string_t": lambda v: type(v) is str,
    "integer_t": lambda v: type(v) is int and -(2**31) <= v < 2**31,
    "long_t": lambda v: type(v) is int and -(2**63) <= v < 2**63,
    "float_t": lambda v: type(v) in (int, float),
    "boolean_t": lambda v: type(v) is bool,
    "json_t": lambda v: True,
}


def _enum_order(key: str) -> int:
    return int(key) if key.lstrip("-").isdigit() else 0


def conformance(record: Any, schema: Schema | None = None) -> list[str]:
    """Every way ``record`` is not valid OCSF of ``schema`` (default: the release Mamori claims), as
    "dotted.path: message" strings; empty when it conforms. ``metadata.version`` must name that release."""
    schema = schema or load_schema()
    if type(record) is not dict:
        return ["(top): must be a JSON object"]
    meta = record.get("metadata")
    claimed = meta.get("version") if type(meta) is dict else None
    problems: list[str] = []
    if claimed != schema.version:
        problems.append(f"metadata.version: must claim OCSF {schema.version}, not {claimed!r}")
    class_uid = record.get("class_uid")
    cls = schema.classes.get(class_uid) if type(class_uid) is int else None
    if cls is None:
        return [*problems, f"class_uid: {class_uid!r} is not a class of OCSF {schema.version}"]
    profiles_value = meta.get("profiles", []) if type(meta) is dict else []
    profiles = (
        frozenset(p for p in profiles_value if type(p) is str) if type(profiles_value) is list else None
    )
    if profiles is None:
        return [*problems, "metadata.profiles: must be an array of profile names"]
    unknown = sorted(profiles - schema.profiles)
    if unknown:
        problems.append(f"metadata.profiles: {', '.join(unknown)} not a profile of OCSF {schema.version}")
    checker = _Checker(schema, profiles)
    checker.check_object(record, cls["attributes"], cls.get("constraints"), "", f"class {cls['caption']}")
    if cls.get("category_uid") != record.get("category_uid"):
        checker.fail("category_uid", f"must be {cls.get('category_uid')} for class {class_uid}")
    activity_id = record.get("activity_id")
    if type(activity_id) is int and record.get("type_uid") != int(cls["uid"]) * 100 + activity_id:
        checker.fail("type_uid", "must be class_uid * 100 + activity_id")
    return problems + checker.problems


__all__ = ["CLAIMED_VERSION", "Schema", "conformance", "load_schema", "shipped_versions"]
