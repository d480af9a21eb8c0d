#!/usr/bin/env bash
# Run keyrefs end to end on one connector config, on the embedded default
# (SQLite and the encrypted local backend) in a throwaway home under .demo/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
home="$root/.demo"
rm -rf "$home"
mkdir -p "$home"
export KEYREFS_HOME="$home"
unset KEYREFS_DATABASE_URL KEYREFS_MASTER_KEY KEYREFS_MASTER_KEY_FILE KEYREFS_SECRET_STORAGE

specs="$root/../shared/specs"
if [[ -f "$specs/destination-snowflake.spec.json" ]]; then
  spec="$specs/destination-snowflake.spec.json"
  config="$specs/destination-snowflake.config.json"
else
  spec="$root/examples/source-postgres.spec.json"
  config="$root/examples/source-postgres.config.json"
fi

actor=$(python3 -c 'import uuid; print(uuid.uuid4())')
workspace=$(python3 -c 'import uuid; print(uuid.uuid4())')
organization=$(python3 -c 'import uuid; print(uuid.uuid4())')

step() { printf '\n== %s\n' "$*" >&2; }

step "keyrefs init (database and master key under $home)"
keyrefs init

step "keyrefs process $(basename "$spec" .spec.json): the stored config holds markers, no secret"
keyrefs process --spec "$spec" --config "$config" \
  --actor-id "$actor" --workspace-id "$workspace" --organization-id "$organization" \
  > "$home/stored.json"
cat "$home/stored.json"

step "keyrefs references --actor-id $actor"
keyrefs references --actor-id "$actor"

step "keyrefs mask: what a UI may show"
keyrefs mask --spec "$spec" --config "$home/stored.json"

step "keyrefs hydrate: the full config is back, equal to the input"
keyrefs hydrate --config "$home/stored.json" --actor-id "$actor" > "$home/hydrated.json"
python3 - "$config" "$home/hydrated.json" <<'PY'
import json, sys
original, hydrated = (json.load(open(path, encoding="utf-8")) for path in sys.argv[1:])
if original != hydrated:
    sys.exit("hydrated config differs from the input")
print(f"hydrated config equals {sys.argv[1]}", file=sys.stderr)
PY

step "the database file holds no secret value in plain text"
python3 - "$config" "$home/keyrefs.db" <<'PY'
import json, sys
config = json.load(open(sys.argv[1], encoding="utf-8"))
import pathlib
database = pathlib.Path(sys.argv[2])
data = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str) and len(node) >= 12:
        yield node
stored = json.load(open(sys.argv[2].replace("keyrefs.db", "stored.json"), encoding="utf-8"))
kept = set(strings(stored))
leaked = [s for s in strings(config) if s not in kept and s.encode() in data]
if leaked:
    sys.exit(f"{len(leaked)} secret values found in the database file")
print("no secret value found in the database file", file=sys.stderr)
PY

step "keyrefs delete-actor: references and managed secrets are removed"
keyrefs delete-actor --actor-id "$actor"
