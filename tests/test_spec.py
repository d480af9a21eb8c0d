"""Finding the concrete secret paths of a config from its spec."""

from __future__ import annotations

from typing import Any

import pytest

from keyrefs.domain.spec import Spec
from keyrefs.errors import InvalidConfig, InvalidInput, InvalidSpec


def secret_paths(spec: dict[str, Any], config: dict[str, Any]) -> list[str]:
    walker = Spec(spec)
    walker.validate(config)
    return [field.path.render() for field in walker.secret_fields(config)]


SECRET = {"type": "string", "airbyte_secret": True}


def test_top_level_secret() -> None:
    spec = {
        "type": "object",
        "properties": {"password": SECRET, "host": {"type": "string"}},
    }
    assert secret_paths(spec, {"password": "p", "host": "h"}) == ["$.password"]


def test_nested_objects() -> None:
    spec = {
        "type": "object",
        "properties": {
            "auth": {
                "type": "object",
                "properties": {
                    "inner": {"type": "object", "properties": {"token": SECRET}},
                },
            }
        },
    }
    assert secret_paths(spec, {"auth": {"inner": {"token": "t"}}}) == [
        "$.auth.inner.token"
    ]


def test_array_of_objects_gets_concrete_indices() -> None:
    spec = {
        "type": "object",
        "properties": {
            "headers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "value": SECRET},
                },
            }
        },
    }
    config = {
        "headers": [
            {"name": "a", "value": "1"},
            {"name": "b"},
            {"name": "c", "value": "3"},
        ]
    }
    assert secret_paths(spec, config) == ["$.headers[0].value", "$.headers[2].value"]


def test_array_of_strings() -> None:
    spec = {
        "type": "object",
        "properties": {"api_keys": {"type": "array", "items": SECRET}},
    }
    assert secret_paths(spec, {"api_keys": ["a", "b"]}) == [
        "$.api_keys[0]",
        "$.api_keys[1]",
    ]


def test_one_of_walks_only_the_matching_branch() -> None:
    spec = {
        "type": "object",
        "properties": {
            "credentials": {
                "type": "object",
                "oneOf": [
                    {
                        "properties": {
                            "auth_type": {"const": "oauth"},
                            "client_secret": SECRET,
                            "client_id": {"type": "string"},
                        },
                        "required": ["auth_type"],
                    },
                    {
                        "properties": {
                            "auth_type": {"const": "key"},
                            "client_id": SECRET,
                        },
                        "required": ["auth_type"],
                    },
                ],
            }
        },
    }
    oauth = {
        "credentials": {"auth_type": "oauth", "client_id": "id", "client_secret": "s"}
    }
    key = {"credentials": {"auth_type": "key", "client_id": "k"}}
    assert secret_paths(spec, oauth) == ["$.credentials.client_secret"]
    assert secret_paths(spec, key) == ["$.credentials.client_id"]


def test_one_of_branch_matches_with_a_marker_in_a_secret_field() -> None:
    spec = {
        "type": "object",
        "properties": {
            "tunnel": {
                "oneOf": [
                    {
                        "properties": {"method": {"const": "none"}},
                        "required": ["method"],
                    },
                    {
                        "properties": {"method": {"const": "ssh"}, "key": SECRET},
                        "required": ["method", "key"],
                    },
                ]
            }
        },
    }
    config = {"tunnel": {"method": "ssh", "key": {"_secret": "x"}}}
    assert secret_paths(spec, config) == ["$.tunnel.key"]


def test_any_of_walks_matching_branches() -> None:
    spec = {
        "type": "object",
        "properties": {
            "conn": {
                "anyOf": [
                    {
                        "properties": {"kind": {"const": "a"}, "secret_a": SECRET},
                        "required": ["kind"],
                    },
                    {
                        "properties": {"kind": {"const": "b"}, "secret_b": SECRET},
                        "required": ["kind"],
                    },
                ]
            }
        },
    }
    assert secret_paths(
        spec, {"conn": {"kind": "a", "secret_a": "x", "secret_b": "y"}}
    ) == ["$.conn.secret_a"]


def test_all_of_walks_every_part() -> None:
    spec = {
        "type": "object",
        "allOf": [
            {"properties": {"user_password": SECRET}},
            {"properties": {"api_token": {"type": "string", "x-secret": True}}},
        ],
    }
    config = {"user_password": "a", "api_token": "b"}
    assert secret_paths(spec, config) == ["$.api_token", "$.user_password"]


def test_ref_to_definitions_and_defs() -> None:
    spec = {
        "type": "object",
        "definitions": {"secret": SECRET},
        "$defs": {
            "auth": {
                "type": "object",
                "properties": {"token": {"$ref": "#/definitions/secret"}},
            }
        },
        "properties": {
            "auth": {"$ref": "#/$defs/auth"},
            "key": {"$ref": "#/definitions/secret"},
        },
    }
    assert secret_paths(spec, {"auth": {"token": "t"}, "key": "k"}) == [
        "$.auth.token",
        "$.key",
    ]


def test_ref_inside_one_of_branch() -> None:
    spec = {
        "type": "object",
        "definitions": {
            "basic": {
                "type": "object",
                "properties": {"type": {"const": "basic"}, "password": SECRET},
                "required": ["type"],
            },
            "none": {
                "type": "object",
                "properties": {"type": {"const": "none"}},
                "required": ["type"],
            },
        },
        "properties": {
            "auth": {
                "oneOf": [
                    {"$ref": "#/definitions/none"},
                    {"$ref": "#/definitions/basic"},
                ]
            }
        },
    }
    assert secret_paths(spec, {"auth": {"type": "basic", "password": "p"}}) == [
        "$.auth.password"
    ]


def test_property_names_needing_brackets() -> None:
    spec = {
        "type": "object",
        "properties": {
            "db.password": SECRET,
            "it's": SECRET,
            "with space": SECRET,
            "a[0]": SECRET,
            "star*": SECRET,
        },
    }
    config = {
        "db.password": "1",
        "it's": "2",
        "with space": "3",
        "a[0]": "4",
        "star*": "5",
    }
    assert secret_paths(spec, config) == [
        "$['a[0]']",
        "$['db.password']",
        "$['it\\'s']",
        "$['star*']",
        "$['with space']",
    ]


def test_secret_false_is_not_a_secret() -> None:
    spec = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "airbyte_secret": False},
            "b": {"type": "string", "x-secret": False},
            "c": {"type": "string", "airbyte_secret": "true"},
        },
    }
    assert secret_paths(spec, {"a": "x", "b": "y", "c": "z"}) == []


def test_non_string_secret_fields_are_found() -> None:
    spec = {
        "type": "object",
        "properties": {
            "pin": {"type": "integer", "airbyte_secret": True},
            "service_account": {"type": "object", "airbyte_secret": True},
            "keys": {"type": "array", "airbyte_secret": True},
        },
    }
    config = {"pin": 1234, "service_account": {"k": "v"}, "keys": [1, 2]}
    assert secret_paths(spec, config) == ["$.keys", "$.pin", "$.service_account"]


def test_null_secret_value_is_skipped() -> None:
    spec = {
        "type": "object",
        "properties": {
            "password": {"type": ["null", "string"], "airbyte_secret": True}
        },
    }
    assert secret_paths(spec, {"password": None}) == []


def test_additional_and_pattern_properties() -> None:
    spec = {
        "type": "object",
        "patternProperties": {"^token_": SECRET},
        "additionalProperties": {"type": "object", "properties": {"pw": SECRET}},
    }
    config = {"token_a": "x", "other": {"pw": "y"}}
    assert secret_paths(spec, config) == ["$.other.pw", "$.token_a"]


def test_validation_error_names_path_and_rule_not_value() -> None:
    spec = {
        "type": "object",
        "properties": {"port": {"type": "integer"}},
        "required": ["host"],
    }
    with pytest.raises(InvalidConfig) as caught:
        Spec(spec).validate({"port": "canary-value-1"})
    message = str(caught.value)
    assert "$.port" in message
    assert "'type'" in message
    assert "'host' is a required property" in message
    assert "canary-value-1" not in message


def test_secret_value_rule_checked_without_showing_value() -> None:
    spec = {
        "type": "object",
        "properties": {
            "key": {"type": "string", "pattern": "^sk_", "airbyte_secret": True}
        },
    }
    walker = Spec(spec)
    config = {"key": "canary-pattern-2"}
    walker.validate(config)
    [field] = walker.secret_fields(config)
    with pytest.raises(InvalidConfig) as caught:
        walker.validate_secret_value(field, config["key"])
    assert "$.key" in str(caught.value)
    assert "canary-pattern-2" not in str(caught.value)


def test_marker_in_secret_field_passes_type_rules() -> None:
    spec = {
        "type": "object",
        "properties": {
            "pin": {"type": "integer", "airbyte_secret": True, "minimum": 5}
        },
    }
    Spec(spec).validate({"pin": {"_secret_reference_id": "x"}})


@pytest.mark.parametrize(
    "spec",
    [
        [],
        "spec",
        {"type": "no-such-type"},
        {"properties": {"a": {"$ref": "https://example.com/schema.json"}}},
        {"properties": {"a": {"$ref": "#/definitions/missing"}}},
    ],
)
def test_unusable_specs_raise_invalid_spec(spec: Any) -> None:
    with pytest.raises(InvalidSpec):
        walker = Spec(spec)
        walker.secret_fields({"a": "x"})


def test_all_branches_mode_finds_secrets_of_unmatched_branches() -> None:
    spec = {
        "type": "object",
        "properties": {
            "c": {
                "oneOf": [
                    {
                        "properties": {"t": {"const": "a"}, "s": SECRET},
                        "required": ["t"],
                    }
                ]
            }
        },
    }
    config = {"c": {"t": "changed", "s": "x"}}
    assert Spec(spec).secret_fields(config) == []
    assert [
        f.path.render() for f in Spec(spec).secret_fields(config, all_branches=True)
    ] == ["$.c.s"]


def test_if_then_else_walks_the_taken_branch() -> None:
    spec = {
        "type": "object",
        "properties": {"kind": {"type": "string"}},
        "if": {"properties": {"kind": {"const": "basic"}}, "required": ["kind"]},
        "then": {"properties": {"pw": SECRET}},
        "else": {"properties": {"token": SECRET}},
    }
    assert secret_paths(spec, {"kind": "basic", "pw": "p", "token": "t"}) == ["$.pw"]
    assert secret_paths(spec, {"kind": "oauth", "pw": "p", "token": "t"}) == ["$.token"]


def test_dependent_schemas_and_dependencies() -> None:
    spec = {
        "type": "object",
        "properties": {"user": {"type": "string"}},
        "dependentSchemas": {"user": {"properties": {"pw": SECRET}}},
        "dependencies": {"key_id": {"properties": {"key": SECRET}}},
    }
    config = {"user": "u", "pw": "p", "key_id": "k", "key": "s"}
    assert secret_paths(spec, config) == ["$.key", "$.pw"]


def test_unevaluated_properties_schema() -> None:
    spec = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"host": {"type": "string"}},
        "unevaluatedProperties": SECRET,
    }
    assert secret_paths(spec, {"host": "h", "anything": "x"}) == ["$.anything"]


def test_ref_with_sibling_secret_mark() -> None:
    spec = {
        "type": "object",
        "definitions": {"text": {"type": "string"}},
        "properties": {"pw": {"$ref": "#/definitions/text", "airbyte_secret": True}},
    }
    assert secret_paths(spec, {"pw": "p"}) == ["$.pw"]


@pytest.mark.parametrize(
    "spec",
    [
        {"properties": {"a": {"not": {"properties": {"b": SECRET}}}}},
        {"properties": {"a": {"contains": SECRET}}},
        {"properties": {"a": {"$dynamicRef": "#meta"}}},
        {
            "properties": {"a": {"$ref": "#/definitions/x"}},
            "definitions": {"x": {"$ref": "https://example.invalid/s"}},
        },
    ],
)
def test_specs_the_walker_cannot_follow_are_rejected(spec: Any) -> None:
    with pytest.raises(InvalidSpec):
        Spec(spec)


def test_remote_ref_is_never_fetched(tmp_path: Any) -> None:
    import http.server
    import threading

    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "string"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        specs = [
            {"properties": {"a": {"$ref": f"{base}/s.json"}}},
            {
                "properties": {
                    "a": {"airbyte_secret": True, "allOf": [{"$ref": f"{base}/s.json"}]}
                }
            },
            {"$id": f"{base}/root.json", "properties": {"a": {"$ref": "s.json"}}},
        ]
        for spec in specs:
            with pytest.raises(InvalidSpec):
                walker = Spec(spec)
                walker.validate({"a": "x"})
                [field] = walker.secret_fields({"a": "x"})
                walker.validate_secret_value(field, "x")
    finally:
        server.shutdown()
    assert requests == []


def test_cyclic_ref_with_deep_value_is_a_clear_error() -> None:
    spec = {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/definitions/node"}},
            }
        },
        "$ref": "#/definitions/node",
    }
    config: dict[str, Any] = {}
    node = config
    for _ in range(3000):
        node["next"] = {}
        node = node["next"]
    with pytest.raises((InvalidSpec, InvalidInput)):
        walker = Spec(spec)
        walker.validate(config)
        walker.secret_fields(config)
