#!/usr/bin/env bash
# The main job: boot the local two-worker SAN lab, configure the workers, and replay the
# 2012 driver's whole VM-lifecycle test matrix through the OpenNebula driver (tm_commands/),
# printing one row per step and "N passed, N failed".  Needs `bash .ci/setup` first.
#   LAB_KEEP=1 bash lab/demo.sh     leave the lab running afterwards (lab/lab.sh down stops it)
#   bash lab/demo.sh --steps instantiate,livemigrate     a part of the matrix (see --list)
set -euo pipefail
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export LAB_DIR=${LAB_DIR:-$REPO/.lab}
[ -x "$REPO/.venv/bin/python" ] || { echo "demo: run 'bash .ci/setup' first" >&2; exit 1; }
cleanup() { [ "${LAB_KEEP:-0}" = 1 ] || "$REPO/lab/lab.sh" down; }
trap cleanup EXIT
"$REPO/lab/lab.sh" build
if ! "$REPO/lab/lab.sh" status >/dev/null 2>&1; then
  "$REPO/lab/lab.sh" up
  "$REPO/lab/lab.sh" provision
fi
cd "$REPO/lab"
"$REPO/.venv/bin/python" -m onesim --lab-dir "$LAB_DIR" "$@"
