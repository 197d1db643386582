"""timm model families of lgn-nas; importing this registers them with timm."""
from .lgn_conv import LogicHead, LogicTreeNet
from .lgn_dense import LogicDenseNet
from .lgn_hybrid import HybridLGN

__all__ = ["LogicDenseNet", "LogicTreeNet", "LogicHead", "HybridLGN"]
