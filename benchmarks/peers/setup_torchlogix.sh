#!/usr/bin/env bash
# torchlogix (PyPI) in its own virtual environment, outside lgn-nas's dependencies, for the benchmarks.
#   bash benchmarks/peers/setup_torchlogix.sh [DIR]     (default $HOME/.cache/lgn_nas/peers/torchlogix)
# Installs torch (CPU, the same version as lgn-nas's venv when that exists) and torchlogix without its
# optional heavy dependencies (torch-geometric, scikit-learn ...): its layers and models need torch only.
set -euo pipefail
dir=${1:-$HOME/.cache/lgn_nas/peers/torchlogix}
torch_version=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo "")
python3 -m venv "$dir"
"$dir/bin/python" -m pip install -q "torch${torch_version:+==$torch_version}" numpy 2> >(grep -v 'is ignored: it is neither' >&2)
"$dir/bin/python" -m pip install -q --no-deps "torchlogix==0.2.2" 2> >(grep -v 'is ignored: it is neither' >&2)
echo "torchlogix venv: $dir"
