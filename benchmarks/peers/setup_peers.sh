#!/usr/bin/env bash
# Install the published peers that benchmarks/bench_netlist_inference.py compares against, each in its
# own virtual environment OUTSIDE the project's (CI never needs them; the benchmark skips a peer that
# is missing, with a note). Safe to run again: a peer that already imports is left alone.
#
#   difflogic  - Felix Petersen's difflogic, branch main-cpu (builds without CUDA), for its
#                CompiledLogicNet (C code, gcc). Source: $DIFFLOGIC_SRC, a git URL or a local git
#                directory (default: the public repository on GitHub).
#   torchlogix - torchlogix 0.2.2 from PyPI, for Circuit.compile (C code, gcc). Its circuit.py uses
#                nested f-strings that need Python >= 3.12 (3.11 raises SyntaxError on import), so its
#                venv is built from $PEER_PYTHON312 (default: python3.12 / python3.13 on PATH or pyenv).
#
# Venvs: $LGN_PEERS_DIR (default ~/.cache/lgn_nas/peers)/difflogic-py<ver> and torchlogix-py<ver>.
# difflogic reuses the project venv's torch (a .pth file points at its site-packages, read-only: nothing
# is installed into the project venv); torchlogix needs a torch for its own Python and installs one.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEERS=${LGN_PEERS_DIR:-$HOME/.cache/lgn_nas/peers}
PROJECT_PY=${PROJECT_PY:-.venv/bin/python}
[ -x "$PROJECT_PY" ] || PROJECT_PY=python3
DIFFLOGIC_SRC=${DIFFLOGIC_SRC:-https://github.com/Felix-Petersen/difflogic.git}
TORCHLOGIX_VERSION=${TORCHLOGIX_VERSION:-0.2.2}
mkdir -p "$PEERS"
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

# ---------------------------------------------------------------- difflogic (project Python + torch)
ver=$("$PROJECT_PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
DL="$PEERS/difflogic-py$ver"
if [ -x "$DL/bin/python" ] && "$DL/bin/python" -c 'import difflogic' 2>/dev/null; then
  echo "difflogic: ready in $DL"
else
  base=$("$PROJECT_PY" -c 'import sys; print(sys._base_executable)')
  "$base" -m venv "$DL"
  site=$("$PROJECT_PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  own=$("$DL/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$site" > "$own/_project_torch.pth"   # after the venv's own packages on sys.path
  src=$(mktemp -d)
  if [ -d "$DIFFLOGIC_SRC" ]; then
    git -C "$DIFFLOGIC_SRC" archive main-cpu | tar -x -C "$src"
  else
    git clone -q --depth 1 --branch main-cpu "$DIFFLOGIC_SRC" "$src"
  fi
  quiet "$DL/bin/python" -m pip install -q --no-deps "$src"
  rm -rf "$src"
  "$DL/bin/python" -c 'import difflogic, torch; print("difflogic: installed in", difflogic.__file__, "torch", torch.__version__)'
fi

# ---------------------------------------------------------------- torchlogix (Python >= 3.12)
py312=${PEER_PYTHON312:-}
if [ -z "$py312" ]; then
  for c in python3.12 python3.13 "$HOME/.pyenv/versions/3.12"*/bin/python3 "$HOME/.pyenv/versions/3.13"*/bin/python3; do
    if "$c" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
      py312=$(command -v "$c"); break
    fi
  done
fi
if [ -z "$py312" ]; then
  echo "torchlogix: skipped, no Python >= 3.12 found (set PEER_PYTHON312)" >&2
  exit 0
fi
ver=$("$py312" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
TL="$PEERS/torchlogix-py$ver"
if [ -x "$TL/bin/python" ] && "$TL/bin/python" -c 'import torchlogix' 2>/dev/null; then
  echo "torchlogix: ready in $TL"
else
  "$py312" -m venv "$TL"
  # torchlogix's own requirements (torchvision, torch-geometric, scikit-learn, rich) are not needed
  # by Circuit: install torch and numpy, then torchlogix without dependencies.
  quiet "$TL/bin/python" -m pip install -q "torch==2.14.1" numpy
  quiet "$TL/bin/python" -m pip install -q --no-deps "torchlogix==$TORCHLOGIX_VERSION"
  "$TL/bin/python" -c 'import torchlogix, torch; print("torchlogix: installed in", torchlogix.__file__, "torch", torch.__version__)'
fi
