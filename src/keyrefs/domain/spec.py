"""The spec walker: find the concrete secret paths of a config from its spec.

A spec is the connector's JSON Schema. A property whose schema has
`"airbyte_secret": true` or `"x-secret": true` is a secret field. The walker
follows `properties`, `additionalProperties`, `patternProperties`, `items`
(each index), `prefixItems`, `allOf`, and the `oneOf`/`anyOf` branches that the
value matches, resolving local `$ref`s to `definitions` or `$defs`.

Secret fields are validated in two steps, so that markers and masks in a
stored config do not fail a type rule meant for the raw value: the config is
validated against a relaxed copy of the spec in which every secret schema
accepts anything, then each raw secret value is validated against its own
schema. Error messages name the path and the rule and never show a value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from keyrefs.domain.jsonpath import ROOT, JsonPath
from keyrefs.errors import InvalidConfig, InvalidInput, InvalidSpec

SECRET_KEYWORDS = ("airbyte_secret", "x-secret")
MAX_REPORTED_ERRORS = 10

Schema = dict[str, Any]


def is_secret_schema(schema: object) -> bool:
    return isinstance(schema, dict) and any(
        schema.get(keyword) is True for keyword in SECRET_KEYWORDS
    )


@dataclass(frozen=True)
class SecretField:
    """A secret field present in a config: its path and its own schema."""

    path: JsonPath
    schema: Schema


class Spec:
    """A connector spec, checked once and reused for every config."""

    def __init__(self, document: object) -> None:
        if not isinstance(document, dict):
            raise InvalidSpec(
                f"spec must be a JSON object, got {type(document).__name__}"
            )
        self.document: Schema = document
        _check_supported(document, JsonPath(), secret_allowed=True)
        validator_class = validator_for(document, default=Draft7Validator)
        try:
            validator_class.check_schema(document)
        except SchemaError as exc:
            where = JsonPath(tuple(exc.absolute_path)).render()
            raise InvalidSpec(
                f"spec is not a valid JSON Schema at {where}: "
                f"keyword {exc.validator!r} is malformed"
            ) from None
        self._relaxed_by_id: dict[int, Schema] = {}
        relaxed = self._relax(document)
        # No retrieval: a spec can never make keyrefs fetch a URL.
        registry: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]
        self._validator = validator_class(relaxed, registry=registry)
        self._strict_validator = validator_class(document, registry=registry)

    @property
    def has_properties(self) -> bool:
        """Whether the spec describes any fields at all."""
        keys = ("properties", "oneOf", "anyOf", "allOf", "$ref", "items")
        return any(key in self.document for key in keys)

    def validate(self, config: object) -> None:
        """Validate a config whose secret fields may hold markers or masks."""
        with _schema_failures():
            found = list(self._validator.iter_errors(config))  # type: ignore[arg-type]
        errors = sorted(found, key=lambda e: list(e.absolute_path))
        if errors:
            raise InvalidConfig(_describe_errors(errors))

    def validate_secret_value(self, secret: SecretField, value: object) -> None:
        """Validate a raw secret value against the rules of its own schema."""
        validator = self._strict_validator.evolve(schema=secret.schema)
        with _schema_failures():
            errors = list(validator.iter_errors(value))  # type: ignore[arg-type]
        if errors:
            raise InvalidConfig(_describe_errors(errors, base=secret.path))

    def secret_fields(
        self, config: object, all_branches: bool = False
    ) -> list[SecretField]:
        """Return the secret fields that hold a non-null value in `config`.

        With `all_branches`, every `oneOf`/`anyOf` branch is walked whether or
        not the value matches it, so a config that no longer validates is still
        masked wherever any branch marks a secret.
        """
        with _schema_failures():
            walked = list(self._walk(self.document, config, ROOT, all_branches))
        found = {field.path: field for field in walked}
        return [found[path] for path in sorted(found, key=_path_sort_key)]

    # Walking ------------------------------------------------------------

    def _walk(
        self, schema: object, value: object, path: JsonPath, all_branches: bool = False
    ) -> Iterator[SecretField]:
        if not isinstance(schema, dict) or value is None:
            return
        if is_secret_schema(schema):
            yield SecretField(path, schema)
            return
        if isinstance(schema.get("$ref"), str):
            # Keywords beside a $ref apply too (2019-09 and later, and in
            # practice in draft 7 specs), so both the target and the siblings
            # are walked.
            target, siblings = self._resolve(schema, path)
            if is_secret_schema(target) or any(map(is_secret_schema, siblings)):
                yield SecretField(path, target if isinstance(target, dict) else {})
                return
            for part in (target, *siblings):
                yield from self._walk(part, value, path, all_branches)
            return

        for subschema in schema.get("allOf", []):
            yield from self._walk(subschema, value, path, all_branches)
        for keyword in ("oneOf", "anyOf"):
            for branch in schema.get(keyword, []):
                # Every matching branch is walked, so that a value matching two
                # branches is treated as secret wherever either branch marks it secret.
                if all_branches or self._matches(branch, value):
                    yield from self._walk(branch, value, path, all_branches)
        yield from self._walk_conditional(schema, value, path, all_branches)

        if isinstance(value, dict):
            yield from self._walk_object(schema, value, path, all_branches)
        elif isinstance(value, list):
            yield from self._walk_array(schema, value, path, all_branches)

    def _walk_conditional(
        self, schema: Schema, value: object, path: JsonPath, all_branches: bool
    ) -> Iterator[SecretField]:
        if "if" not in schema:
            return
        matched = self._matches(schema["if"], value)
        if matched:
            yield from self._walk(schema["if"], value, path, all_branches)
        if all_branches or matched:
            yield from self._walk(schema.get("then"), value, path, all_branches)
        if all_branches or not matched:
            yield from self._walk(schema.get("else"), value, path, all_branches)

    def _walk_object(
        self, schema: Schema, value: dict[str, Any], path: JsonPath, all_branches: bool
    ) -> Iterator[SecretField]:
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        additional = schema.get("additionalProperties")
        if additional is None:
            additional = schema.get("unevaluatedProperties")
        for keyword in ("dependencies", "dependentSchemas"):
            for key, dependent in schema.get(keyword, {}).items():
                # A dependent schema applies to the whole object when `key` is present.
                if key in value and isinstance(dependent, dict):
                    yield from self._walk(dependent, value, path, all_branches)
        for key, item in value.items():
            matched = False
            if key in properties:
                matched = True
                yield from self._walk(
                    properties[key], item, path.child(key), all_branches
                )
            for pattern, subschema in patterns.items():
                if re.search(pattern, key):
                    matched = True
                    yield from self._walk(
                        subschema, item, path.child(key), all_branches
                    )
            if not matched and isinstance(additional, dict):
                yield from self._walk(additional, item, path.child(key), all_branches)

    def _walk_array(
        self, schema: Schema, value: list[Any], path: JsonPath, all_branches: bool
    ) -> Iterator[SecretField]:
        prefix = schema.get("prefixItems", [])
        items = schema.get("items")
        if isinstance(items, list):
            # Draft 7 tuple form: `items` is a list and `additionalItems` the rest.
            prefix, items = items, schema.get("additionalItems")
        for index, item in enumerate(value):
            subschema = prefix[index] if index < len(prefix) else items
            yield from self._walk(subschema, item, path.child(index), all_branches)

    def _matches(self, branch: object, value: object) -> bool:
        relaxed = self._relaxed_by_id.get(id(branch), branch)
        if not isinstance(relaxed, (dict, bool)):
            return False
        validator = self._validator.evolve(schema=relaxed)
        return bool(validator.is_valid(value))  # type: ignore[arg-type]

    def _resolve(self, schema: object, path: JsonPath) -> tuple[object, list[Schema]]:
        """Follow a chain of $refs; return the target and the keywords beside each."""
        seen: set[str] = set()
        siblings: list[Schema] = []
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            reference: str = schema["$ref"]
            if reference in seen:
                raise InvalidSpec(f"spec $ref {reference!r} at {path} refers to itself")
            seen.add(reference)
            beside = {key: item for key, item in schema.items() if key != "$ref"}
            if beside:
                siblings.append(beside)
            schema = _resolve_pointer(self.document, reference, path)
        return schema, siblings

    def _relax(self, schema: object) -> Any:
        """Copy `schema`, replacing every secret schema by one that accepts anything."""
        if isinstance(schema, list):
            return [self._relax(item) for item in schema]
        if not isinstance(schema, dict):
            return copy.deepcopy(schema)
        if is_secret_schema(schema):
            relaxed: Schema = {"airbyte_secret": True}
        else:
            relaxed = {key: self._relax(item) for key, item in schema.items()}
        self._relaxed_by_id[id(schema)] = relaxed
        return relaxed


# Keywords whose subschemas the walker follows. A secret marked below any
# other keyword (not, contains, propertyNames, ...) would be missed, so a spec
# with one is rejected.
_SCHEMA_KEYWORDS = {
    "items", "additionalItems", "additionalProperties", "unevaluatedProperties",
    "if", "then", "else",
}  # fmt: skip
_SCHEMA_LIST_KEYWORDS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_SCHEMA_MAP_KEYWORDS = {
    "properties", "patternProperties", "definitions", "$defs",
    "dependencies", "dependentSchemas",
}  # fmt: skip
_UNSUPPORTED_REFERENCES = ("$dynamicRef", "$recursiveRef")


def _check_supported(node: object, where: JsonPath, secret_allowed: bool) -> None:
    """Reject specs the walker cannot follow: remote refs, and hidden secret marks."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_supported(item, where.child(index), secret_allowed)
        return
    if not isinstance(node, dict):
        return
    if is_secret_schema(node) and not secret_allowed:
        raise InvalidSpec(
            f"spec marks a secret at {where} under a keyword keyrefs does not "
            "follow (such as not, contains or propertyNames): move the mark to "
            "properties, items or a oneOf/anyOf/allOf branch"
        )
    reference = node.get("$ref")
    if isinstance(reference, str) and not reference.startswith("#"):
        raise InvalidSpec(
            f"spec $ref {reference!r} at {where} is not local: only references "
            "into the same spec (#/definitions/..., #/$defs/...) are supported"
        )
    for keyword in _UNSUPPORTED_REFERENCES:
        if keyword in node:
            raise InvalidSpec(
                f"spec uses {keyword} at {where}, which keyrefs does not support"
            )
    for key, item in node.items():
        inside = where.child(key)
        if key in _SCHEMA_KEYWORDS or key in _SCHEMA_LIST_KEYWORDS:
            _check_supported(item, inside, secret_allowed)
        elif key in _SCHEMA_MAP_KEYWORDS and isinstance(item, dict):
            for name, subschema in item.items():
                _check_supported(subschema, inside.child(name), secret_allowed)
        elif isinstance(item, (dict, list)):
            _check_supported(item, inside, secret_allowed=False)


def _refuse_retrieval(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


@contextmanager
def _schema_failures() -> Iterator[None]:
    """Turn unresolvable references and runaway recursion into keyrefs errors."""
    try:
        yield
    except Unresolvable as exc:
        raise InvalidSpec(
            f"spec has a reference that cannot be resolved: {exc.ref!r}"
        ) from None
    except RecursionError:
        raise InvalidInput(
            "spec or config is nested too deeply (or the spec's $refs loop): flatten it"
        ) from None


def _resolve_pointer(document: Schema, reference: str, path: JsonPath) -> object:
    if not reference.startswith("#"):
        raise InvalidSpec(
            f"spec $ref {reference!r} at {path} is not local: only references "
            "into the same spec (#/definitions/..., #/$defs/...) are supported"
        )
    node: object = document
    pointer = reference[1:]
    tokens = pointer.split("/")[1:] if pointer else []
    for token in tokens:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise InvalidSpec(f"spec $ref {reference!r} at {path} points to nothing")
    return node


def _path_sort_key(path: JsonPath) -> tuple[tuple[int, str | int], ...]:
    return tuple((0, s) if isinstance(s, int) else (1, s) for s in path.segments)


def _describe_errors(errors: list[ValidationError], base: JsonPath = ROOT) -> str:
    lines = [_describe_error(error, base) for error in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"... and {len(errors) - MAX_REPORTED_ERRORS} more errors")
    return "config does not match the spec: " + "; ".join(lines)


def _describe_error(error: ValidationError, base: JsonPath) -> str:
    """Describe one validation error by path and rule, without the value."""
    path = JsonPath((*base.segments, *error.absolute_path)).render()
    rule = str(error.validator)
    expected = error.validator_value
    if rule == "required":
        # The message of a `required` error names the property, never a value.
        return f"at {path}: {error.message}"
    if rule == "additionalProperties":
        return f"at {path}: a property is not allowed by additionalProperties: false"
    if rule in ("oneOf", "anyOf"):
        return (
            f"at {path}: the value matches none (or, for oneOf, several) "
            f"of the {rule} branches"
        )
    if rule in ("type", "enum", "const", "pattern", "format"):
        return f"at {path}: violates {rule!r} (expected {_short(expected)})"
    if isinstance(expected, (int, float, bool, str)):
        return f"at {path}: violates {rule!r} (limit {_short(expected)})"
    return f"at {path}: violates {rule!r}"


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
