"""The settings of one ``facealign train`` run: :class:`TrainConfig`, read from a TOML recipe
(``configs/*.toml``) and checked as a whole before anything is prepared.

No torch here: ``facealign train`` reads and checks the recipe (:meth:`TrainConfig.from_toml`,
:meth:`TrainConfig.validate`) before it needs torch or spends an hour preparing 2.7 GiB of
training data, so that a typo costs a one-line error naming the key (:class:`ConfigError`).
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from facealign_cli.models.weights import ARCH_ALIASES, ARCHS, canonical_arch

#: Values of the ``labels`` key: the teacher's labels (v1) or labels refitted to the real
#: landmarks (v2).
LABEL_SOURCES = ("teacher", "refit")
#: ``init_from`` value that starts from the teacher's own weights, converted to ``mb05``.
TEACHER_INIT = "teacher"
#: Values of ``choose_on``: the validation split that picks the kept epoch.
CHOOSE_ON = ("afw", "aflw")


class ConfigError(ValueError):
    """A training recipe that cannot be used: unreadable, not TOML, an unknown key or a value of
    the wrong type or range. ``str(err)`` is one line naming the file (when read from one) and
    the key; ``key`` is the key (None for the file as a whole)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class TrainConfig:
    """Settings of one training run (read from a TOML file; every key optional).

    The constructor takes values as given (a checkpoint's stored config is rebuilt with it);
    :meth:`validate` checks them, :meth:`from_toml` reads and checks a recipe.
    """

    arch: str = "dws_s"
    stem: int = 16
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    n_dense: int = 1000
    w_landmarks: float = 1.0
    w_real: float = 0.2
    w_param: float = 1.0
    scale_jitter: float = 0.10
    shift_jitter: float = 0.06
    rot_deg: float = 12.0
    flip: bool = True
    occlusion_p: float = 0.25
    seed: int = 0
    threads: int = 2
    max_steps: int = 0  # >0: stop after this many steps (smoke runs)
    limit_faces: int = 0  # >0: use only this many faces (smoke runs)
    yaw_weights: tuple = (1.0, 1.0, 1.0)  # sampling weight of |yaw| in [0,30], (30,60], (60,90]
    # "" = random init; a path: a checkpoint of an earlier stage of the same recipe; "teacher":
    # the teacher's own weights, converted (facealign_cli.training.convert; the v4 fine-tune)
    init_from: str = ""
    labels: str = "teacher"  # "teacher" (v1) or "refit" (labels refitted to the real landmarks)
    prior: float = 100.0  # weight of the refit's prior (labels = "refit")
    hold_out_val: bool = False  # keep the 300-W AFW faces out of training, validate on them
    labeller: str = ""  # label with this facealign checkpoint, not the teacher (self-training)
    # v3 recipe (issue 18); the defaults keep the v1 / v2 recipes unchanged
    roi_scale: float = 1.0  # train on crops of this fraction of the 3DDFA roi side (test-time rule)
    rot_sigma: float = 0.0  # std of the rotation in degrees (0: rot_deg / 2), clipped at rot_deg
    real_aflw: bool = True  # the real-landmark loss also on AFLW's 16 mapped points
    photo_p: float = 0.0  # probability of each photo-like degradation (_photo_like)
    # v4 recipe (issue 23)
    val_aflw: int = 0  # hold out this many AFLW-train faces as a validation split (0: none)
    choose_on: str = "afw"  # the split that picks the epoch: "afw" or "aflw"
    # roi boxes drawn from the detector's measured box error (scripts/measure_box_error.py's
    # .npz; "" = none) for a fraction box_error_p of the faces
    box_error: str = ""
    box_error_p: float = 0.5
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read and check a recipe: the keys of a ``[train]`` table (or, without one, the
        top-level keys), every one a field of this class; missing keys take the defaults.

        Raises:
            ConfigError: the file cannot be read, is not UTF-8 TOML, has a key that is not a
                field (or top-level keys beside ``[train]``), or a value :meth:`validate`
                refuses; the message names the file and the key.
        """
        path = Path(path)
        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); a TOML file is "
                              "UTF-8") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        if "train" in d:
            if not isinstance(d["train"], dict):
                raise ConfigError(f"{path}: train must be a table ([train])", "train")
            stray = sorted(k for k in d if k != "train")
            if stray:
                raise ConfigError(f"{path}: unknown top-level key {stray[0]!r}: the settings go "
                                  "under [train]", stray[0])
            d = d["train"]
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(f"{path}: unknown key {key!r}{hint}", key)
        d = dict(d)
        if isinstance(d.get("yaw_weights"), list):
            d["yaw_weights"] = tuple(d["yaw_weights"])
        cfg = cls(**d)
        try:
            cfg.validate()
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}", exc.key) from None
        return cfg

    def validate(self) -> None:
        """Check every value's type and range (numbers finite; an int is accepted where a float
        is wanted, a bool never where a number is).

        Raises:
            ConfigError: the first bad value, ``key = value: want ...``.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            want = _check(f.name, f.type, value)
            if want:
                raise ConfigError(f"{f.name} = {_show(value)}: want {want}", f.name)


# key -> (low, high, low is excluded): the ranges of the numeric keys. Every size has an upper
# bound, so that a typo (stem = 100000000) is a one-line error before any memory is spent.
_RANGES = {
    "stem": (1, 256, False), "epochs": (1, 10_000, False), "batch_size": (1, 4096, False),
    "lr": (0, 1.0, True), "weight_decay": (0, 1.0, False), "n_dense": (1, 20_000, False),
    "w_landmarks": (0, 1e3, False), "w_real": (0, 1e3, False), "w_param": (0, 1e3, False),
    "scale_jitter": (0, 1.0, False), "shift_jitter": (0, 1.0, False),
    "rot_deg": (0, 180, False), "occlusion_p": (0, 1, False), "seed": (0, 2**32 - 1, False),
    "threads": (1, 256, False), "max_steps": (0, 10**9, False),
    "limit_faces": (0, 10**7, False), "prior": (0, 1e6, False), "roi_scale": (0, 4.0, True),
    "rot_sigma": (0, 180, False), "photo_p": (0, 1, False), "val_aflw": (0, 3000, False),
    "box_error_p": (0, 1, False),
}


def stored_config(cfg: TrainConfig) -> dict:
    """The config as a checkpoint stores it: ``asdict(cfg)`` with the arch under its current
    name (``"fan_m"`` -> ``"dws_m"``, :data:`~facealign_cli.models.weights.ARCH_ALIASES`)."""
    return {**asdict(cfg), "arch": canonical_arch(cfg.arch)}


def same_recipe(stored: dict, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's stored config (a dict) is ``cfg``'s, old arch names read as their
    current ones (a run written as ``fan_m`` resumes under ``dws_m`` and back) and keys the
    stored config lacks read as their defaults."""
    # keys added to the recipe after the run started take their defaults (which keep the old
    # behaviour), so that runs written before a new key resume
    full = {**asdict(TrainConfig()), **stored}
    return {**full, "arch": canonical_arch(stored.get("arch"))} == stored_config(cfg)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check(name: str, kind: str, value) -> str | None:
    """What ``value`` of key ``name`` (annotation ``kind``) should be, or None when it is."""
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "str":
        if not isinstance(value, str):
            return "a string"
        if name == "arch" and value not in ARCHS and value not in ARCH_ALIASES:
            return f"one of {', '.join(sorted(ARCHS))} (or an old name: " \
                   f"{', '.join(sorted(ARCH_ALIASES))})"
        if name == "labels" and value not in LABEL_SOURCES:
            return f"one of {', '.join(LABEL_SOURCES)}"
        if name == "choose_on" and value not in CHOOSE_ON:
            return f"one of {', '.join(CHOOSE_ON)}"
        return None
    if kind == "dict":
        return None if isinstance(value, dict) else "a table"
    if kind == "tuple":  # yaw_weights: one sampling weight per |yaw| bin
        ok = (isinstance(value, tuple) and len(value) == 3 and all(
            _is_number(w) and math.isfinite(w) and w >= 0 for w in value) and any(value))
        return None if ok else "3 finite weights >= 0, not all 0, e.g. [1.0, 1.5, 2.5]"
    lo, hi, open_lo = _RANGES[name]
    what = "an integer" if kind == "int" else "a finite number"
    rng = f"{'>' if open_lo else '>='} {lo}" + ("" if hi is None else f" and <= {hi}")
    if not _is_number(value) or (kind == "int" and not isinstance(value, int)):
        return f"{what} {rng}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{what} {rng}"
    if value < lo or (open_lo and value == lo) or (hi is not None and value > hi):
        return f"{what} {rng}"
    return None


def _show(value) -> str:
    """``value`` as a TOML-like literal, cut to one short line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 60 else text[:57] + "..."
