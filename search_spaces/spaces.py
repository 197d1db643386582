"""Define-by-run search spaces: ``space(trial) -> genome``.

Each space is a small class with keyword-only bounds (defaults sized for a 2-core CPU and 28x28
images; widen them on bigger machines) whose ``__call__`` asks the trial for parameters with names
that say what they are (``depth``, ``width_0``, ``tree_depth_1``, ``gumbel_tau``, ...) and returns a
validated genome (its data checked; the model's own constraints are checked where it is built, once:
``build_model(genome)``, which the search does for each trial). Conditional parameters are plain control flow: ``gumbel_tau`` exists only for
Gumbel relaxations, ``width_i`` only for layers that exist, ``thresholds`` only with several bits.

``get_space(name, **bounds)`` builds one by name; ``list_spaces()`` lists the names;
``register_space`` adds your own.
"""
from __future__ import annotations

import json

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from .genome import GenomeError, validate_genome

__all__ = ["BaseSpace", "DenseSpace", "ConvSpace", "HybridSpace", "register_space", "get_space", "list_spaces"]

_SPACES: Dict[str, Type["BaseSpace"]] = {}



def register_space(name: str) -> Callable[[Type["BaseSpace"]], Type["BaseSpace"]]:
    """Class decorator: make a space available to :func:`get_space` and ``lgn-nas search --space``."""
    def decorator(cls: Type["BaseSpace"]) -> Type["BaseSpace"]:
        _SPACES[name] = cls
        cls.name = name
        return cls
    return decorator


def list_spaces() -> List[str]:
    """Names accepted by :func:`get_space`."""
    return sorted(_SPACES)


def get_space(name: str, **bounds: Any) -> "BaseSpace":
    """The space called ``name`` with its bounds overridden by ``bounds`` (keyword arguments of its class)."""
    if name not in _SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(list_spaces())}")
    cls = _SPACES[name]
    try:
        return cls(**bounds)
    except TypeError as error:
        raise ValueError(f"bad bounds for search space {name!r}: {error}; accepted: "
                         f"{', '.join(cls.bound_names())}") from error


def _check_range(name: str, bounds: Any, *, minimum: float = 1, integer: bool = True) -> None:
    """``bounds`` must be a ``[low, high]`` pair of numbers (ints unless ``integer=False``), ``minimum <= low <= high``."""
    kind = "int" if integer else "number"
    number = (int,) if integer else (int, float)
    if (isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence) or len(bounds) != 2
            or not all(isinstance(v, number) and not isinstance(v, bool) for v in bounds)):
        raise ValueError(f"{name}: expected a [low, high] pair of {kind}s, got {json.dumps(bounds, default=str)}")
    low, high = bounds
    if not (minimum <= low <= high):
        raise ValueError(f"{name}: expected {minimum} <= low <= high, got ({low}, {high})")


def _check_choices(name: str, choices: Sequence[Any], known: Optional[Sequence[Any]] = None) -> Tuple[Any, ...]:
    choices = tuple(choices)
    if not choices:
        raise ValueError(f"{name}: at least one choice is needed")
    if known is not None:
        bad = [c for c in choices if c not in known]
        if bad:
            raise ValueError(f"{name}: unknown choice(s) {bad}; known: {', '.join(map(str, known))}")
    return choices


class BaseSpace:
    """Common parts: the data shape, encoding, GroupSum and relaxation parameters."""

    name = "base"
    model = ""

    def __init__(
            self,
            *,
            num_classes: int = 10,
            input_shape: Sequence[int] = (1, 28, 28),
            input_bits: Sequence[int] = (1, 2),
            thresholds: Sequence[str] = ("uniform", "distributive"),
            connectivity: Sequence[str] = ("random", "unique"),
            relaxation: Sequence[str] = ("softmax", "hard_st", "gumbel_st"),
            parametrization: Sequence[str] = ("raw16",),
            init: Sequence[str] = ("residual", "gaussian"),
            group_tau: Tuple[float, float] = (1.0, 64.0),
            gumbel_tau: Tuple[float, float] = (0.25, 2.0),
            seed: int = 0,
    ) -> None:
        from lgn_nas.layers.connectivity import CONNECTIVITIES
        from lgn_nas.layers.parametrizations import INITS, PARAMETRIZATIONS
        from lgn_nas.layers.relaxations import RELAXATIONS
        from lgn_nas.layers.thermometer import THRESHOLD_METHODS

        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape: expected (C, H, W), got {input_shape!r}")
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_bits = _check_choices("input_bits", input_bits)
        self.thresholds = _check_choices("thresholds", thresholds, THRESHOLD_METHODS)
        self.connectivity = _check_choices("connectivity", connectivity, tuple(CONNECTIVITIES))
        self.relaxation = _check_choices("relaxation", relaxation, RELAXATIONS)
        self.parametrization = _check_choices("parametrization", parametrization, tuple(PARAMETRIZATIONS))
        self.init = _check_choices("init", init, INITS)
        _check_range("group_tau", group_tau, minimum=1e-6, integer=False)
        _check_range("gumbel_tau", gumbel_tau, minimum=1e-6, integer=False)
        self.group_tau = tuple(group_tau)
        self.gumbel_tau = tuple(gumbel_tau)
        self.seed = int(seed)

    @classmethod
    def bound_names(cls) -> List[str]:
        import inspect

        names: List[str] = []
        for klass in cls.__mro__:
            if klass is object:
                continue
            for parameter in inspect.signature(klass.__init__).parameters.values():
                if parameter.kind == parameter.KEYWORD_ONLY and parameter.name not in names:
                    names.append(parameter.name)
        return names

    def bounds(self) -> Dict[str, Any]:
        """The bounds in effect (JSON data; stored with the study)."""
        return {name: (list(v) if isinstance(v, tuple) else v)
                for name in self.bound_names() if (v := getattr(self, name, None)) is not None}

    # ------------------------------------------------------------------ shared parameters
    @staticmethod
    def _categorical(trial: Any, name: str, choices: Tuple[Any, ...]) -> Any:
        return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))

    def suggest_common(self, trial: Any) -> Dict[str, Any]:
        """Encoding, wiring, relaxation and temperatures (names as in the genome)."""
        genome: Dict[str, Any] = {}
        bits = int(self._categorical(trial, "input_bits", self.input_bits))
        genome["input_bits"] = bits
        if bits > 1:
            genome["thresholds"] = self._categorical(trial, "thresholds", self.thresholds)
        genome["connectivity"] = self._categorical(trial, "connectivity", self.connectivity)
        relaxation = self._categorical(trial, "relaxation", self.relaxation)
        genome["relaxation"] = relaxation
        from lgn_nas.layers.relaxations import STOCHASTIC_RELAXATIONS  # the Gumbel ones: their noise has a temperature

        if relaxation in STOCHASTIC_RELAXATIONS:
            genome["temperature"] = trial.suggest_float("gumbel_tau", *self.gumbel_tau, log=True)
        genome["parametrization"] = self._categorical(trial, "parametrization", self.parametrization)
        genome["init"] = self._categorical(trial, "init", self.init)
        genome["group_tau"] = trial.suggest_float("group_tau", *self.group_tau, log=True)
        return genome

    def data_kwargs(self) -> Dict[str, Any]:
        return {"num_classes": self.num_classes, "in_chans": self.input_shape[0], "img_size": list(self.input_shape[1:])}

    def head_width(self, trial: Any, name: str, low: int, high: int) -> int:
        """A classifier width: a multiple of ``num_classes`` in [low, high] (log-uniform in units)."""
        units_low = max(1, math.ceil(low / self.num_classes))
        units_high = max(units_low, high // self.num_classes)
        if units_low == units_high:
            return units_low * self.num_classes
        return trial.suggest_int(name, units_low * self.num_classes, units_high * self.num_classes,
                                 step=self.num_classes)

    def finish(self, genome: Dict[str, Any]) -> Dict[str, Any]:
        """The genome with the model name, data shape and seed, checked as data (:class:`Genome`)."""
        genome = {"model": self.model, **genome, **self.data_kwargs(), "seed": self.seed}
        return validate_genome(genome, build=False)

    def __call__(self, trial: Any) -> Dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.bounds().items())})"


@register_space("dense")
class DenseSpace(BaseSpace):
    """Randomly wired dense LGNs (``lgn_dense_s`` family).

    Parameters: ``depth``; ``width_mode`` ("shared": one ``width`` for every layer, a multiple of
    ``num_classes``; "per_layer": hidden ``width_0`` .. ``width_{depth-2}`` and the last layer's
    ``classifier_width``, a multiple of ``num_classes``); ``crop_border`` (pixels on each side that
    the first layer never reads: ``input_crop`` = image size - 2 x border; 4 is the 2022 paper's
    20x20 MNIST crop); plus the common ``input_bits``, ``thresholds``, ``connectivity``,
    ``relaxation``, ``gumbel_tau``, ``parametrization``, ``init``, ``group_tau``.
    """

    model = "lgn_dense_s"

    def __init__(self, *, depth: Tuple[int, int] = (2, 4), width: Tuple[int, int] = (500, 4000),
                 width_mode: Sequence[str] = ("shared", "per_layer"), crop_border: Sequence[int] = (0, 4),
                 **common: Any) -> None:
        super().__init__(**common)
        _check_range("depth", depth)
        _check_range("width", width, minimum=self.num_classes)
        self.depth = tuple(depth)
        self.width = tuple(width)
        self.width_mode = _check_choices("width_mode", width_mode, ("shared", "per_layer"))
        self.crop_border = _check_choices("crop_border", crop_border)
        smallest = min(self.input_shape[1:])
        bad = [b for b in self.crop_border if not isinstance(b, int) or isinstance(b, bool) or b < 0
               or smallest - 2 * b < 1]
        if bad:
            raise ValueError(f"crop_border: {bad} leave no pixel of a {list(self.input_shape[1:])} image; "
                             f"expected ints in 0..{(smallest - 1) // 2}")

    def __call__(self, trial: Any) -> Dict[str, Any]:
        depth = trial.suggest_int("depth", *self.depth)
        mode = self._categorical(trial, "width_mode", self.width_mode)
        if mode == "shared":
            width: Any = self.head_width(trial, "width", *self.width)
        else:
            width = [trial.suggest_int(f"width_{i}", *self.width, log=True) for i in range(depth - 1)]
            width.append(self.head_width(trial, "classifier_width", *self.width))
        genome: Dict[str, Any] = {"depth": depth, "width": width}
        border = int(self._categorical(trial, "crop_border", self.crop_border))
        if border:
            genome["input_crop"] = [self.input_shape[1] - 2 * border, self.input_shape[2] - 2 * border]
        return self.finish({**genome, **self.suggest_common(trial)})


@register_space("conv")
class ConvSpace(BaseSpace):
    """Convolutional LGNs (LogicTreeNet, ``lgn_conv_*``).

    Parameters per stage i: ``channels_i``, ``kernel_size_i`` (only sizes that fit the map),
    ``padding_i`` (receptive field at the border), ``tree_depth_i``; shared: ``stages``,
    ``channels_per_tree``, ``groups`` (stages after the first; channels are multiples of it),
    ``head_depth``, hidden ``head_width_i`` and ``classifier_width`` (a multiple of ``num_classes``); plus
    the common parameters. ``kernel_size`` is an odd range (low, high).
    """

    model = "lgn_conv_mnist_s"

    def __init__(self, *, stages: Tuple[int, int] = (1, 2), channels: Tuple[int, int] = (4, 16),
                 kernel_size: Tuple[int, int] = (3, 5), padding: Sequence[int] = (0, 1),
                 tree_depth: Tuple[int, int] = (1, 3), channels_per_tree: Sequence[int] = (2,),
                 groups: Sequence[int] = (1, 2), head_depth: Tuple[int, int] = (1, 2),
                 head_width: Tuple[int, int] = (200, 2000), **common: Any) -> None:
        common.setdefault("input_bits", (1,))
        super().__init__(**common)
        _check_range("stages", stages)
        _check_range("channels", channels)
        _check_range("tree_depth", tree_depth)
        _check_range("head_depth", head_depth)
        _check_range("head_width", head_width, minimum=self.num_classes)
        self.stages, self.channels, self.tree_depth = tuple(stages), tuple(channels), tuple(tree_depth)
        self.head_depth, self.head_width_range = tuple(head_depth), tuple(head_width)
        _check_range("kernel_size", kernel_size)
        if kernel_size[0] % 2 == 0 or kernel_size[1] % 2 == 0:
            raise ValueError(f"kernel_size: expected odd sizes, got {tuple(kernel_size)}")
        self.kernel_size = tuple(kernel_size)
        self.padding = _check_choices("padding", padding)
        self.channels_per_tree = _check_choices("channels_per_tree", channels_per_tree)
        self.groups = _check_choices("groups", groups)

    def bounds(self) -> Dict[str, Any]:
        bounds = super().bounds()
        bounds["head_width"] = list(self.head_width_range)
        return bounds

    def __call__(self, trial: Any) -> Dict[str, Any]:
        height = min(self.input_shape[1:])
        # Stages the image can hold: each needs a map of at least 2x2 after the smallest kernel.
        fits, size = 0, height
        while fits < self.stages[1] and size + 2 * max(self.padding) - self.kernel_size[0] + 1 >= 2:
            size = (size + 2 * max(self.padding) - self.kernel_size[0] + 1) // 2
            fits += 1
        if fits < self.stages[0]:
            raise GenomeError(f"a {height}x{height} image holds at most {fits} conv stages, "
                              f"but the space asks for at least {self.stages[0]}")
        stages = trial.suggest_int("stages", self.stages[0], fits)
        groups = int(self._categorical(trial, "groups", self.groups)) if stages > 1 else 1
        per_tree = int(self._categorical(trial, "channels_per_tree", self.channels_per_tree))
        channels, kernels, paddings, depths = [], [], [], []
        size = height
        for i in range(stages):
            remaining = stages - i - 1
            padding = int(self._categorical(trial, f"padding_{i}", self.padding))
            # Kernels that leave room for this pool and the remaining stages (at the smallest kernel).
            def fits_after(k: int) -> bool:
                s = (size + 2 * padding - k + 1)
                if s < 2:
                    return False
                s //= 2
                for _ in range(remaining):
                    s = s + 2 * max(self.padding) - self.kernel_size[0] + 1
                    if s < 2:
                        return False
                    s //= 2
                return True
            allowed = [k for k in range(self.kernel_size[0], self.kernel_size[1] + 1, 2) if fits_after(k)]
            if not allowed:
                raise GenomeError(f"stage {i}: no kernel size in {self.kernel_size} fits a {size}x{size} map "
                                  f"with padding {padding} and {remaining} stage(s) after it")
            kernel = trial.suggest_int(f"kernel_size_{i}", allowed[0], allowed[-1], step=2) if len(allowed) > 1 else allowed[0]
            step = groups if i > 0 or remaining > 0 else 1
            low = max(step, math.ceil(self.channels[0] / step) * step)
            high = max(low, self.channels[1] // step * step)
            channels.append(trial.suggest_int(f"channels_{i}", low, high, step=step) if high > low else low)
            depths.append(trial.suggest_int(f"tree_depth_{i}", *self.tree_depth))
            kernels.append(kernel)
            paddings.append(padding)
            size = (size + 2 * padding - kernel + 1) // 2
        head_depth = trial.suggest_int("head_depth", *self.head_depth)
        head_widths = [trial.suggest_int(f"head_width_{j}", *self.head_width_range, log=True)
                       for j in range(head_depth - 1)]
        head_widths.append(self.head_width(trial, "classifier_width", *self.head_width_range))
        genome = {"channels": channels, "kernel_size": kernels, "padding": paddings, "tree_depth": depths,
                  "channels_per_tree": per_tree, "groups": [1] + [groups] * (stages - 1),
                  "head_widths": head_widths, **self.suggest_common(trial)}
        return self.finish(genome)


@register_space("hybrid")
class HybridSpace(BaseSpace):
    """A float timm backbone cut at ``feature_index`` feeding a logic head (``lgn_hybrid_*``).

    Parameters: ``backbone`` (timm name), ``feature_index`` (the cut point: 1 = early, high-resolution
    features), ``head_depth``, hidden ``head_width_i`` and ``classifier_width``; plus the common parameters (the head's input bits,
    wiring, relaxation, temperatures).
    """

    model = "lgn_hybrid_resnet18"

    def __init__(self, *, backbone: Sequence[str] = ("resnet18", "mobilenetv3_small_100"),
                 feature_index: Tuple[int, int] = (1, 3), head_depth: Tuple[int, int] = (1, 2),
                 head_width: Tuple[int, int] = (200, 2000), **common: Any) -> None:
        common.setdefault("input_bits", (1, 2))
        common.setdefault("thresholds", ("uniform",))
        super().__init__(**common)
        import timm

        unknown = [b for b in backbone if b not in timm.list_models()]
        if unknown:
            raise ValueError(f"backbone: unknown timm model(s) {unknown}")
        _check_range("feature_index", feature_index, minimum=0)
        _check_range("head_depth", head_depth)
        _check_range("head_width", head_width, minimum=self.num_classes)
        self.backbone = _check_choices("backbone", backbone)
        self.feature_index = tuple(feature_index)
        self.head_depth, self.head_width_range = tuple(head_depth), tuple(head_width)

    def bounds(self) -> Dict[str, Any]:
        bounds = super().bounds()
        bounds["head_width"] = list(self.head_width_range)
        return bounds

    def __call__(self, trial: Any) -> Dict[str, Any]:
        backbone = self._categorical(trial, "backbone", self.backbone)
        feature_index = trial.suggest_int("feature_index", *self.feature_index)
        head_depth = trial.suggest_int("head_depth", *self.head_depth)
        head_widths = [trial.suggest_int(f"head_width_{j}", *self.head_width_range, log=True)
                       for j in range(head_depth - 1)]
        head_widths.append(self.head_width(trial, "classifier_width", *self.head_width_range))
        common = self.suggest_common(trial)
        common.pop("thresholds", None)  # the head's thermometer has no threshold method to choose
        genome = {"backbone": backbone, "feature_index": feature_index, "head_widths": head_widths, **common}
        return self.finish(genome)
