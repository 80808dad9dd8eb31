#!/usr/bin/env bash
# DOS Edge developer entry point: set up (idempotent) and run.
#   ./dev.sh demo [ARGS]   agent + private Mosquitto + an emulated fleet running the real firmware; readings stream until Ctrl-C
#   ./dev.sh test [ARGS]   the whole test suite (pytest ARGS)
#   ./dev.sh bench         the benchmarks in bench/
# Set-up: Debian packages mosquitto, mosquitto-clients, chromium and python3-venv when missing (apt-get, via sudo when not root), a virtualenv in .venv
# (override with DOS_EDGE_VENV) with the project and its extras installed; re-installed only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${DOS_EDGE_VENV:-.venv}

say() { printf '[dev.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  say "installing Debian packages: $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_system() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)  # the benchmarks' C subscriber
  command -v chromium >/dev/null || missing+=(chromium)  # the status page test loads it in headless Chromium
  if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || { say "Python >= 3.11 is needed (found $(python3 --version))"; exit 1; }
}

ensure_venv() {
  [ -x "$VENV/bin/python" ] || { say "creating virtualenv $VENV"; python3 -m venv "$VENV"; }
  local want have=""
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  [ -f "$VENV/.dos-edge-installed" ] && have=$(cat "$VENV/.dos-edge-installed")
  if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import dos_agent, dos_rig' 2>/dev/null; then
    say "installing dos-edge and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[rig,dev]'
    echo "$want" > "$VENV/.dos-edge-installed"
  fi
  export PATH="$PWD/$VENV/bin:$PATH:/usr/sbin"
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)  ensure_system; ensure_venv; exec dos-edge demo "$@" ;;
  test)  ensure_system; ensure_venv; exec python -m pytest "$@" ;;
  bench) ensure_system; ensure_venv; for b in bench/*.py; do say "$b"; python "$b"; done ;;
  *)     sed -n '2,8p' "$0"; [ "$cmd" = help ] || exit 2 ;;
esac
