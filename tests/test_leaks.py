"""A planted secret value never shows up outside hydration."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from keyrefs.errors import KeyrefsError
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from tests.helpers import SECRET

CANARY = f"canary-{uuid.uuid4().hex}"
SPEC = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string"},
        "password": {**SECRET, "pattern": "^canary-"},
        "pin": {"type": "integer", "airbyte_secret": True},
    },
}


def test_canary_stays_out_of_logs_errors_and_database(
    service: KeyrefsService,
    scope: ActorScope,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    stored = service.process(scope, SPEC, {"host": "h", "password": CANARY})
    full = service.hydrate(stored, scope.actor_id)
    assert full["password"] == CANARY
    service.mask(SPEC, full)
    service.process(scope, SPEC, {"host": "h", "password": MASK})
    service.process(scope, SPEC, {"host": "h", "password": CANARY + "-v2"})

    bad_inputs = [
        {"password": CANARY},  # missing host
        {"host": "h", "password": "x" + CANARY},  # fails the secret's pattern
        {"host": "h", "pin": CANARY},  # wrong type for a non-string secret
        {
            "host": CANARY,
            "password": {"_secret": CANARY},
        },  # external in default storage
        {"host": "h", "password": {"_secret_reference_id": CANARY}},
        {"host": "h", "password": {"_secret": "x", CANARY: 1}},
    ]
    for config in bad_inputs:
        with pytest.raises(KeyrefsError) as caught:
            service.process(scope, SPEC, config)
        messages.append(str(caught.value))
        messages.append(repr(caught.value))

    for text in messages:
        assert CANARY not in text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)
    assert CANARY not in repr(service.backends.get(DEFAULT_STORAGE_ID))
    if database_url.startswith("sqlite:///"):
        database = Path(database_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):
            assert CANARY.encode() not in path.read_bytes(), path
