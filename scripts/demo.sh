#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command: set the machine up, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="/usr/local/bin:$PATH"
exec node dist/cli/main.js demo "$@"
