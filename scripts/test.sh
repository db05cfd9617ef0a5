#!/usr/bin/env bash
# The test command (README, CI): installs what it needs, then lint, typecheck and every package's tests.
# Integration tests boot real VMs, WireGuard and namespaces; FORM_REQUIRE_INTEGRATION=1 makes a
# missing prerequisite a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$PATH"
export FORM_REQUIRE_INTEGRATION="${FORM_REQUIRE_INTEGRATION:-1}"
echo "test: node $(node --version)"
t0=$(date +%s)
npm run --silent lint
npm run --silent typecheck
npm test -- "$@"
echo "test: passed in $(( $(date +%s) - t0 )) s"
