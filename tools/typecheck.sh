#!/usr/bin/env bash
# Type-check the tree as it installs: client/, server/ and crypto/ import as secure_mor.client, … .
# mypy cannot follow setuptools' editable-install finder, so mirror the installed layout with symlinks.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.typecheck
rm -rf "$tree" && mkdir -p "$tree/secure_mor"
for entry in secure_mor/*; do ln -s "../../$entry" "$tree/secure_mor/$(basename "$entry")"; done
for role in client server crypto; do ln -s "../../$role" "$tree/secure_mor/$role"; done
MYPYPATH="$tree" exec .venv/bin/mypy "$tree/secure_mor" tests benchmarks "$@"
