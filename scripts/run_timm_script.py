"""Run one of timm's scripts (benchmark.py, train.py, validate.py, ...) with the lgn* models registered.

timm's scripts live in its repository (github.com/huggingface/pytorch-image-models), not in the wheel.
This imports lgn_nas (from this checkout) and then runs the script as ``__main__`` with the remaining
arguments, so ``--model lgn_conv_mnist_s`` resolves like any timm model. timm's scripts feed random
normal tensors (benchmark.py, random erasing), so the models' [0, 1] input range check is turned off
(``lgn_nas.inputs.set_range_check(False)``; NaN and infinity are still refused):

    python scripts/run_timm_script.py path/to/benchmark.py --model lgn_conv_mnist_s --device cpu
"""
import runpy
import sys
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].endswith(".py") or not Path(argv[0]).is_file():
        got = repr(argv[0]) if argv else "nothing"
        print(f"run_timm_script: expected the path of a timm script (e.g. benchmark.py) first, got {got}",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import lgn_nas  # noqa: F401  (registers the lgn* models)
    from lgn_nas.inputs import set_range_check

    set_range_check(False)

    script = Path(argv[0]).resolve()
    sys.path.insert(0, str(script.parent))  # the script's own imports, as `python script.py` would have
    sys.argv = [str(script), *argv[1:]]
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
