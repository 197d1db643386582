"""``python -m lgn_nas.pretrained RUN_DIR TAG``: see :mod:`lgn_nas.pretrained.convert`."""
import sys

from .convert import main

sys.exit(main())
