"""Define-by-run search spaces: ``space(trial) -> genome``.

Each space is a small class with keyword-only bounds (defaults sized for a 2-core CPU and 28x28
images; widen them on bigger machines) whose ``__call__`` asks the trial for parameters with names
that say what they are (``depth``, ``width_0``, ``tree_depth_1``, ``gumbel_tau``, ...) and returns a
validated genome (its data checked; the model's own constraints are checked where it is built, once:
``build_model(genome)``, which the search does for each trial). Conditional parameters are plain control flow: ``gumbel_tau`` exists only for
Gumbel relaxations, ``width_i`` only for layers that exist, ``thresholds`` only with several bits,
``candidates`` only for ``connectivity="learnable"`` (whose choices include it only when asked:
``connectivity=["learnable"]`` or with the fixed schemes, and ``candidates=[low, high]``).

``get_space(name, **bounds)`` builds one by name; ``list_spaces()`` lists the names;
``register_space`` adds your own.
"""
from __future__ import annotations

import json

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

from .genome import GenomeError, validate_genome
from .training import TrainingSpace, is_gumbel

__all__ = ["BaseSpace", "DenseSpace", "ConvSpace", "HybridSpace", "register_space", "get_space", "list_spaces",
           "space_class", "receptive_field"]

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


def space_class(name: str) -> Type["BaseSpace"]:
    """The class registered as ``name``."""
    if name not in _SPACES:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(list_spaces())}")
    return _SPACES[name]


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


def _outside(bound: str, value: Any, allowed: Sequence[Any], *, interval: bool = False,
             label: Optional[str] = None) -> None:
    """Raise :class:`GenomeError` when ``value`` is not in ``allowed`` (choices, or ``[low, high]`` with ``interval``).

    The message names the genome entry (``label``, default ``genome key 'BOUND'``), the value and the bound.
    """
    inside = (allowed[0] <= value <= allowed[1]) if interval else value in allowed
    if not inside:
        raise GenomeError(f"{label or f'genome key {bound!r}'}: {value!r} is outside the space's bound "
                          f"{bound}={json.dumps(list(allowed), default=str)}")


def _check_choices(name: str, choices: Sequence[Any], known: Optional[Sequence[Any]] = None) -> Tuple[Any, ...]:
    choices = tuple(choices)
    if not choices:
        raise ValueError(f"{name}: at least one choice is needed")
    if known is not None:
        bad = [c for c in choices if c not in known]
        if bad:
            raise ValueError(f"{name}: unknown choice(s) {bad}; known: {', '.join(map(str, known))}")
    return choices



def _outside_head(widths: List[int], depth: Tuple[int, int], width: Tuple[int, int]) -> None:
    """Refuse a logic head whose depth (``len(widths)``) or any width lies outside the space's bounds."""
    _outside("head_depth", len(widths), depth, interval=True,
             label="genome key 'head_widths' (its length, the head depth)")
    for j, value in enumerate(widths):
        _outside("head_width", value, width, interval=True, label=f"genome key 'head_widths' (layer {j})")

class BaseSpace:
    """Common parts: the data shape, encoding, GroupSum and relaxation parameters.

    Also the searched training options (:class:`~search_spaces.training.TrainingSpace`:
    ``temperature_end``, ``temperature_schedule``, ``weight_decay``; ``None``: not searched), which
    :meth:`suggest_training` turns into the trial's ``TrainConfig`` fields, and the bounds checks:
    :meth:`check` refuses a genome outside the bounds (naming the bound), :meth:`min_raw_gates` is
    the smallest genome's raw gate count (a ``max_raw_gates`` below it is a budget no trial meets).
    ``default_lr_range`` is the learning-rate range ``lgn-nas search`` searches when none is given.
    """

    name = "base"
    model = ""
    default_lr_range: Tuple[float, float] = (0.01, 0.1)
    float_parameters = False  # True: the models have float weights besides the gate logits (hybrids)

    def __init__(
            self,
            *,
            num_classes: int = 10,
            input_shape: Sequence[int] = (1, 28, 28),
            input_bits: Sequence[int] = (1, 2),
            thresholds: Sequence[str] = ("uniform", "distributive"),
            connectivity: Sequence[str] = ("random", "unique"),
            candidates: Tuple[int, int] = (2, 16),
            relaxation: Sequence[str] = ("softmax", "hard_st", "gumbel_st"),
            parametrization: Sequence[str] = ("raw16",),
            init: Sequence[str] = ("residual", "gaussian"),
            group_tau: Tuple[float, float] = (1.0, 64.0),
            gumbel_tau: Tuple[float, float] = (0.25, 2.0),
            temperature_end: Optional[Tuple[float, float]] = None,
            temperature_schedule: Optional[Sequence[str]] = None,
            weight_decay: Optional[Tuple[float, float]] = None,
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
        _check_range("candidates", candidates)
        self.candidates = tuple(candidates)
        self.relaxation = _check_choices("relaxation", relaxation, RELAXATIONS)
        self.parametrization = _check_choices("parametrization", parametrization, tuple(PARAMETRIZATIONS))
        self.init = _check_choices("init", init, INITS)
        _check_range("group_tau", group_tau, minimum=1e-6, integer=False)
        _check_range("gumbel_tau", gumbel_tau, minimum=1e-6, integer=False)
        self.group_tau = tuple(group_tau)
        self.gumbel_tau = tuple(gumbel_tau)
        self.seed = int(seed)
        self.training = TrainingSpace(temperature_end=temperature_end,
                                      temperature_schedule=temperature_schedule or ("cosine",),
                                      weight_decay=weight_decay, decay_gate_logits=not self.float_parameters)
        self.temperature_end = self.training.temperature_end
        self.temperature_schedule = self.training.temperature_schedule if temperature_end is not None else None
        self.weight_decay = self.training.weight_decay

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

    def suggest_common(self, trial: Any, *, max_candidates: Optional[int] = None) -> Dict[str, Any]:
        """Encoding, wiring, relaxation and temperatures (names as in the genome).

        ``candidates`` (the candidate wires per gate input) exists only for a learnable connectivity,
        log-uniform in its bound and at most ``max_candidates`` (the fewest inputs a logic layer of
        the genome reads, where the space knows it; a layer reads at least its candidates).
        """
        from lgn_nas.layers.connectivity import get_connectivity

        genome: Dict[str, Any] = {}
        bits = int(self._categorical(trial, "input_bits", self.input_bits))
        genome["input_bits"] = bits
        if bits > 1:
            genome["thresholds"] = self._categorical(trial, "thresholds", self.thresholds)
        genome["connectivity"] = self._categorical(trial, "connectivity", self.connectivity)
        if get_connectivity(genome["connectivity"]).learnable:
            low, high = self.candidates
            high = max(low, min(high, max_candidates)) if max_candidates is not None else high
            genome["candidates"] = trial.suggest_int("candidates", low, high, log=True) if high > low else low
        relaxation = self._categorical(trial, "relaxation", self.relaxation)
        genome["relaxation"] = relaxation
        from lgn_nas.layers.relaxations import STOCHASTIC_RELAXATIONS  # the Gumbel ones: their noise has a temperature

        if relaxation in STOCHASTIC_RELAXATIONS:
            genome["temperature"] = trial.suggest_float("gumbel_tau", *self.gumbel_tau, log=True)
        genome["parametrization"] = self._categorical(trial, "parametrization", self.parametrization)
        genome["init"] = self._categorical(trial, "init", self.init)
        genome["group_tau"] = trial.suggest_float("group_tau", *self.group_tau, log=True)
        return genome

    def suggest_training(self, trial: Any, genome: Dict[str, Any], template: Any) -> Dict[str, Any]:
        """The trial's searched ``TrainConfig`` fields (see :class:`~search_spaces.training.TrainingSpace`)."""
        return self.training(trial, genome, template)

    def min_raw_gates(self) -> int:
        """Raw gates of the smallest genome this space can return (0: no known floor)."""
        return 0

    def check(self, genome: Dict[str, Any]) -> None:
        """Raise :class:`GenomeError` naming the bound when ``genome`` lies outside this space's bounds."""
        _outside("input_bits", genome.get("input_bits", 1), self.input_bits)
        if genome.get("input_bits", 1) > 1 and "thresholds" in genome:
            _outside("thresholds", genome["thresholds"], self.thresholds)
        for key in ("connectivity", "relaxation", "parametrization", "init"):
            if key in genome:
                _outside(key, genome[key], getattr(self, key))
        if genome.get("candidates") is not None:
            _outside("candidates", genome["candidates"], self.candidates, interval=True)
        if "group_tau" in genome:
            _outside("group_tau", genome["group_tau"], self.group_tau, interval=True)
        if is_gumbel(genome.get("relaxation")) and "temperature" in genome:
            _outside("gumbel_tau", genome["temperature"], self.gumbel_tau, interval=True,
                     label="genome key 'temperature' (the Gumbel tau)")

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
        self.check(genome)
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
    20x20 MNIST crop); plus the common ``input_bits``, ``thresholds``, ``connectivity`` (and
    ``candidates``), ``relaxation``, ``gumbel_tau``, ``parametrization``, ``init``, ``group_tau``.
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

    def check(self, genome: Dict[str, Any]) -> None:
        super().check(genome)
        if "depth" in genome:
            _outside("depth", genome["depth"], self.depth, interval=True)
        width = genome.get("width")
        for j, w in enumerate([width] if isinstance(width, int) else list(width or ())):
            _outside("width", w, self.width, interval=True, label=f"genome key 'width' (layer {j})")

    def min_raw_gates(self) -> int:
        classifier = max(1, math.ceil(self.width[0] / self.num_classes)) * self.num_classes
        costs = {"shared": self.depth[0] * classifier, "per_layer": (self.depth[0] - 1) * self.width[0] + classifier}
        return min(costs[mode] for mode in self.width_mode)

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
        pixels = self.input_shape[0] * (self.input_shape[1] - 2 * border) * (self.input_shape[2] - 2 * border)
        hidden = [width] * (depth - 1) if isinstance(width, int) else width[:-1]
        return self.finish({**genome, **self.suggest_common(trial, max_candidates=min([pixels, *hidden]))})


@register_space("conv")
class ConvSpace(BaseSpace):
    """Convolutional LGNs (LogicTreeNet, ``lgn_conv_*``).

    Shared parameters: ``stages``; ``groups`` (channel groups of the stages after the first; channels
    are multiples of it); ``channels_per_tree`` (input channels a tree's leaves read); ``channel_mode``
    ("per_stage": ``channels_i`` for every stage; "growth": the paper's k and its growth,
    ``channels_0`` = k and ``channel_growth`` g, stage i has k g^i channels). Per stage i:
    ``pool_i`` (whether a 2x2 OR pool follows; offered only where both choices leave room for the
    stages after it), ``padding_i`` (receptive field at the border), ``kernel_size_i`` (odd, only
    sizes that fit), ``tree_depth_i``. Head: ``head_depth``, hidden ``head_width_i`` and
    ``classifier_width`` (a multiple of ``num_classes``). Plus the common parameters (``input_bits``,
    ``thresholds``, ``connectivity`` and ``candidates``, ``relaxation``, ``gumbel_tau``,
    ``parametrization``, ``init`` (default residual only), ``group_tau`` (default 4-64: the paper's MNIST net has 6.5)) and the searched training options (by default the softmax anneal's
    ``temperature_end``; ``weight_decay`` when given). The receptive field of the last map (pixels per
    side) is stored as the trial's user attribute ``receptive_field``.

    Genomes name ``lgn_conv_mnist_s``, or ``lgn_conv_s`` on 3 x 32 x 32 data (the same layers for the same
    kwargs; a CIFAR-10 trial then exports with CIFAR's cfg and re-trains under the CIFAR model's name).
    ``kernel_size`` is an odd range, ``padding`` / ``channel_growth`` int ranges, ``pool`` the allowed
    choices (``(True,)``: every stage pools, as in LogicTreeNet). A space no image of
    ``input_shape`` can hold (too many stages) is refused when built.
    """

    model = "lgn_conv_mnist_s"
    rgb_model = "lgn_conv_s"  # the genomes' model on 3 x 32 x 32 data (CIFAR-10): same layers, its cfg and tags
    default_lr_range = (0.03, 0.3)  # around the conv recipe's 0.1 (lgn_nas/train/recipes.py)

    def __init__(self, *, stages: Tuple[int, int] = (1, 3), channels: Tuple[int, int] = (4, 64),
                 channel_mode: Sequence[str] = ("per_stage", "growth"), channel_growth: Tuple[int, int] = (1, 4),
                 kernel_size: Tuple[int, int] = (3, 5), padding: Tuple[int, int] = (0, 1),
                 pool: Sequence[bool] = (True, False), tree_depth: Tuple[int, int] = (1, 3),
                 channels_per_tree: Sequence[int] = (2,), groups: Sequence[int] = (1, 2),
                 head_depth: Tuple[int, int] = (1, 2), head_width: Tuple[int, int] = (200, 2000),
                 **common: Any) -> None:
        common.setdefault("input_bits", (1, 2))
        common.setdefault("temperature_end", (0.03, 0.3))
        # The conv recipe (lgn_nas/train/recipes.py) was found with residual trees; a GroupSum tau near 1
        # saturates heads of hundreds of outputs per class (the paper grows tau like their square root):
        # a first MNIST study drew init=gaussian with tau 1.1 over 735 outputs a class and scored 76%.
        common.setdefault("init", ("residual",))
        common.setdefault("group_tau", (4.0, 64.0))
        super().__init__(**common)
        if self.input_shape == (3, 32, 32):
            self.model = self.rgb_model  # so a CIFAR trial exports (and re-trains) as lgn_conv_s, not an MNIST name
        _check_range("stages", stages)
        _check_range("channels", channels)
        _check_range("channel_growth", channel_growth)
        _check_range("tree_depth", tree_depth)
        _check_range("head_depth", head_depth)
        _check_range("head_width", head_width, minimum=self.num_classes)
        _check_range("padding", padding, minimum=0)
        self.stages, self.channels, self.tree_depth = tuple(stages), tuple(channels), tuple(tree_depth)
        self.channel_growth, self.padding = tuple(channel_growth), tuple(padding)
        self.head_depth, self.head_width_range = tuple(head_depth), tuple(head_width)
        _check_range("kernel_size", kernel_size)
        if kernel_size[0] % 2 == 0 or kernel_size[1] % 2 == 0:
            raise ValueError(f"kernel_size: expected odd sizes, got {tuple(kernel_size)}")
        self.kernel_size = tuple(kernel_size)
        self.channel_mode = _check_choices("channel_mode", channel_mode, ("per_stage", "growth"))
        self.pool = _check_choices("pool", pool, (True, False))
        if any(not isinstance(v, bool) for v in self.pool):
            raise ValueError(f"pool: expected bools (true/false), got {list(self.pool)}")
        self.channels_per_tree = _check_choices("channels_per_tree", channels_per_tree)
        self.groups = _check_choices("groups", groups)
        bad = [g for g in self.groups if not isinstance(g, int) or isinstance(g, bool) or g < 1
               or self._channel_range(g)[0] > self._channel_range(g)[1]]
        if bad:
            raise ValueError(f"groups: {bad} leave no multiple of the group count in channels={list(self.channels)}")
        size = tuple(self.input_shape[1:])
        self.max_stages = max([n for n in range(1, self.stages[1] + 1) if self._fits(size, n)], default=0)
        if self.max_stages < self.stages[0]:
            raise ValueError(f"stages: a {size[0]}x{size[1]} image holds at most {self.max_stages} conv stages "
                             f"(kernel_size={list(self.kernel_size)}, padding={list(self.padding)}), but the space "
                             f"asks for at least {self.stages[0]}")
        if "growth" in self.channel_mode and self.max_stages > 1:
            low, high = self._channel_range(max(self.groups))
            if low * self.channel_growth[0] ** (self.max_stages - 1) > high:
                raise ValueError(f"channel_growth: the smallest growth {self.channel_growth[0]} over "
                                 f"{self.max_stages} stages from {low} channels exceeds channels={list(self.channels)}; "
                                 "widen channels or lower channel_growth")

    def bounds(self) -> Dict[str, Any]:
        bounds = super().bounds()
        bounds["head_width"] = list(self.head_width_range)
        return bounds

    # ----------------------------------------------------------------- shapes
    def _channel_range(self, step: int) -> Tuple[int, int]:
        """The channel counts in ``channels`` that are multiples of ``step`` (low > high: none)."""
        return max(step, math.ceil(self.channels[0] / step) * step), self.channels[1] // step * step

    @staticmethod
    def _stage_out(size: Tuple[int, int], kernel: int, padding: int, pooled: bool) -> Optional[Tuple[int, int]]:
        """The map after one stage, or ``None`` where the kernel or the pool does not fit."""
        h, w = size[0] + 2 * padding - kernel + 1, size[1] + 2 * padding - kernel + 1
        if min(h, w) < (2 if pooled else 1):
            return None
        return (h // 2, w // 2) if pooled else (h, w)

    def _fits(self, size: Optional[Tuple[int, int]], stages: int) -> bool:
        """Whether ``stages`` more stages fit a ``size`` map (with the choices that shrink it least)."""
        for _ in range(stages):
            if size is None:
                return False
            size = self._stage_out(size, self.kernel_size[0], self.padding[1], pooled=False not in self.pool)
        return size is not None

    def _classifier_low(self) -> int:
        return max(1, math.ceil(self.head_width_range[0] / self.num_classes)) * self.num_classes

    # ----------------------------------------------------------------- sampling
    def __call__(self, trial: Any) -> Dict[str, Any]:
        stages = (trial.suggest_int("stages", self.stages[0], self.max_stages)
                  if self.max_stages > self.stages[0] else self.stages[0])
        groups = int(self._categorical(trial, "groups", self.groups)) if stages > 1 else 1
        per_tree = int(self._categorical(trial, "channels_per_tree", self.channels_per_tree))
        step = groups if stages > 1 else 1
        low, high = self._channel_range(step)
        mode = self._categorical(trial, "channel_mode", self.channel_mode) if stages > 1 else "per_stage"
        if mode == "growth":
            g_low, g_high = self.channel_growth
            while g_high > g_low and low * g_high ** (stages - 1) > high:
                g_high -= 1
            growth = trial.suggest_int("channel_growth", g_low, g_high) if g_high > g_low else g_low
            k_high = max(low, high // growth ** (stages - 1) // step * step)
            k = trial.suggest_int("channels_0", low, k_high, step=step) if k_high > low else low
            channels = [k * growth ** i for i in range(stages)]
        else:
            channels = [trial.suggest_int(f"channels_{i}", low, high, step=step) if high > low else low
                        for i in range(stages)]
        kernels, paddings, depths, pools = [], [], [], []
        size = tuple(self.input_shape[1:])
        k_min, p_max = self.kernel_size[0], self.padding[1]
        for i in range(stages):
            left = stages - i - 1

            def fits(kernel: int, padding: int, pooled: bool) -> bool:
                return self._fits(self._stage_out(size, kernel, padding, pooled), left)

            # Each choice keeps the rest buildable: pools, then paddings (a suffix), then kernels (a prefix).
            options = [b for b in self.pool if fits(k_min, p_max, b)]
            pooled = (self._categorical(trial, f"pool_{i}", self.pool) if len(options) == len(self.pool)
                      else options[0])
            allowed_p = [p for p in range(self.padding[0], p_max + 1) if fits(k_min, p, pooled)]
            padding = trial.suggest_int(f"padding_{i}", allowed_p[0], p_max) if len(allowed_p) > 1 else allowed_p[0]
            allowed_k = [k for k in range(k_min, self.kernel_size[1] + 1, 2) if fits(k, padding, pooled)]
            kernel = (trial.suggest_int(f"kernel_size_{i}", allowed_k[0], allowed_k[-1], step=2)
                      if len(allowed_k) > 1 else allowed_k[0])
            depths.append(trial.suggest_int(f"tree_depth_{i}", *self.tree_depth))
            kernels.append(kernel)
            paddings.append(padding)
            pools.append(bool(pooled))
            size = self._stage_out(size, kernel, padding, pooled)
        features, low = channels[-1] * size[0] * size[1], self.head_width_range[0]
        common = self.suggest_common(trial, max_candidates=min(features, low))
        # 'unique' wiring needs distinct input pairs: at most n (n - 1) / 2 neurons on n inputs.
        head_depth = trial.suggest_int("head_depth", *self.head_depth)
        head_widths = []
        for j in range(head_depth):
            high = self.head_width_range[1]
            if common["connectivity"] == "unique":
                high = max(low, min(high, features * (features - 1) // 2))
            head_widths.append(trial.suggest_int(f"head_width_{j}", low, high, log=True) if j < head_depth - 1
                               else self.head_width(trial, "classifier_width", low, high))
            features = head_widths[-1]
        genome = {"channels": channels, "kernel_size": kernels, "padding": paddings, "tree_depth": depths,
                  "channels_per_tree": per_tree, "groups": [1] + [groups] * (stages - 1), "pool": pools,
                  "head_widths": head_widths, **common}
        genome = self.finish(genome)
        trial.set_user_attr("receptive_field", receptive_field(genome))
        return genome

    # ----------------------------------------------------------------- bounds
    def check(self, genome: Dict[str, Any]) -> None:
        super().check(genome)
        channels = list(genome.get("channels", ()))
        n = len(channels)
        _outside("stages", n, self.stages, interval=True, label="genome key 'channels' (its length, the stages)")

        def per_stage(key: str) -> List[Any]:  # a key the genome leaves to the model's default is not checked
            value = genome.get(key)
            return [] if value is None else list(value) if isinstance(value, list) else [value] * n

        for key, allowed, interval in (("channels", self.channels, True), ("kernel_size", self.kernel_size, True),
                                       ("padding", self.padding, True), ("tree_depth", self.tree_depth, True),
                                       ("pool", self.pool, False)):
            for i, value in enumerate(per_stage(key)):
                _outside(key, value, allowed, interval=interval, label=f"genome key {key!r} (stage {i})")
        for i, k in enumerate(per_stage("kernel_size")):
            if isinstance(k, int) and k % 2 == 0:
                raise GenomeError(f"genome key 'kernel_size' (stage {i}): {k} is outside the space's bound "
                                  f"kernel_size={list(self.kernel_size)} (odd sizes)")
        for i, g in enumerate(per_stage("groups")[1:], start=1):
            _outside("groups", g, self.groups, label=f"genome key 'groups' (stage {i})")
        if "channels_per_tree" in genome:
            _outside("channels_per_tree", genome["channels_per_tree"], self.channels_per_tree)
        if "per_stage" not in self.channel_mode and n > 1:
            ratio = channels[1] // channels[0] if channels[0] else 0
            if channels != [channels[0] * ratio ** i for i in range(n)]:
                raise GenomeError(f"genome key 'channels': {channels} is outside the space's bound "
                                  f"channel_mode={list(self.channel_mode)} (k times a growth per stage)")
            _outside("channel_growth", ratio, self.channel_growth, interval=True,
                     label="genome key 'channels' (its growth)")
        _outside_head(list(genome.get("head_widths", ())), self.head_depth, self.head_width_range)

    def min_raw_gates(self) -> int:
        """Raw gates of the smallest genome: every stage choice searched exactly (a small dynamic program)."""
        import functools

        tree = 2 ** self.tree_depth[0] - 1
        head = (self.head_depth[0] - 1) * self.head_width_range[0] + self._classifier_low()
        best = math.inf
        for stages in range(self.stages[0], self.max_stages + 1):
            for groups in (self.groups if stages > 1 else (1,)):
                low = self._channel_range(groups if stages > 1 else 1)[0]
                options = [[low] * stages]
                if "growth" in self.channel_mode and stages > 1:
                    options.append([low * self.channel_growth[0] ** i for i in range(stages)])
                for channels in options:
                    @functools.lru_cache(maxsize=None)
                    def cheapest(i: int, size: Tuple[int, int]) -> float:
                        if i == stages:
                            return 0
                        best_here = math.inf
                        for pooled in self.pool:
                            for padding in range(self.padding[0], self.padding[1] + 1):
                                for kernel in range(self.kernel_size[0], self.kernel_size[1] + 1, 2):
                                    out = self._stage_out(size, kernel, padding, pooled)
                                    if out is None:
                                        continue
                                    h = size[0] + 2 * padding - kernel + 1
                                    w = size[1] + 2 * padding - kernel + 1
                                    gates = channels[i] * tree * h * w + (channels[i] * 3 * out[0] * out[1] if pooled else 0)
                                    best_here = min(best_here, gates + cheapest(i + 1, out))
                        return best_here

                    best = min(best, cheapest(0, tuple(self.input_shape[1:])) + head)
        return int(best)


def receptive_field(genome: Dict[str, Any]) -> int:
    """Pixels per side of the input window one unit of a conv genome's last map sees (trees and OR pools)."""
    channels = genome["channels"]

    def per_stage(key: str, default: Any) -> List[Any]:
        value = genome.get(key, default)
        return list(value) if isinstance(value, list) else [value] * len(channels)

    field, jump = 1, 1
    for kernel, pooled in zip(per_stage("kernel_size", 3), per_stage("pool", True)):
        field += (kernel - 1) * jump
        if pooled:
            field += jump
            jump *= 2
    return field


@register_space("hybrid")
class HybridSpace(BaseSpace):
    """A float timm backbone cut at ``feature_index`` feeding a logic head (``lgn_hybrid_*``).

    Parameters: ``backbone`` (timm name), ``feature_index`` (the cut point: 1 = early, high-resolution
    features), ``head_depth``, hidden ``head_width_i`` and ``classifier_width``; plus the common parameters (the head's input bits,
    wiring, relaxation, temperatures).
    """

    model = "lgn_hybrid_resnet18"
    float_parameters = True

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

    def check(self, genome: Dict[str, Any]) -> None:
        super().check(genome)
        if "backbone" in genome:
            _outside("backbone", genome["backbone"], self.backbone)
        if "feature_index" in genome:
            _outside("feature_index", genome["feature_index"], self.feature_index, interval=True)
        widths = list(genome.get("head_widths", ()))
        if widths:
            _outside_head(widths, self.head_depth, self.head_width_range)

    def min_raw_gates(self) -> int:
        classifier = max(1, math.ceil(self.head_width_range[0] / self.num_classes)) * self.num_classes
        return (self.head_depth[0] - 1) * self.head_width_range[0] + classifier

    def __call__(self, trial: Any) -> Dict[str, Any]:
        backbone = self._categorical(trial, "backbone", self.backbone)
        feature_index = trial.suggest_int("feature_index", *self.feature_index)
        head_depth = trial.suggest_int("head_depth", *self.head_depth)
        head_widths = [trial.suggest_int(f"head_width_{j}", *self.head_width_range, log=True)
                       for j in range(head_depth - 1)]
        head_widths.append(self.head_width(trial, "classifier_width", *self.head_width_range))
        common = self.suggest_common(trial, max_candidates=min(head_widths[:-1], default=None))
        common.pop("thresholds", None)  # the head's thermometer has no threshold method to choose
        genome = {"backbone": backbone, "feature_index": feature_index, "head_widths": head_widths, **common}
        return self.finish(genome)
