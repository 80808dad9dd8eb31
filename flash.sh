#!/usr/bin/env bash
# flash.sh: the technician's entry point. Flash (optional), install, configure, self-test, register and label a node.
# Everything happens in dos_agent.flash (`dos-edge flash`); run `./flash.sh --help` for the options, docs/field.md for
# the guide. Uses the project's virtualenv when there is one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${here}/.venv/bin/python"
[[ -x "${python}" ]] || python="$(command -v python3)"
exec "${python}" -m dos_agent.flash "$@"
