#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command: set the machine up, bring up the demo mesh,
# send traffic through it for 10 seconds, and show `kernmesh status`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/local/bin:$PATH"
node dist/cli/main.js demo up
node dist/cli/main.js demo traffic --seconds 10
node dist/cli/main.js status || true
echo
echo "the demo stays up: see it with 'npx kernmesh status',"
echo "send more with 'npx kernmesh demo traffic', remove it with 'npx kernmesh demo down'."
