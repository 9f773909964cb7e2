"""Experiment configuration: validated models, YAML in, ``--set key=value`` overrides.

Every registered experiment declares a pydantic model derived from :class:`ExperimentConfig`
(unknown keys are errors, values are range-checked, a float must be finite: ``.inf`` and ``.nan``
are refused for every float field, nested ones included). :func:`load_config` merges, in order,
the model's defaults, a named preset (``quick``, ``demo``, ...), a YAML file and the
``--set`` overrides, then validates once; any problem raises :class:`ConfigError` whose
message names each bad field and what is allowed -- before any work starts.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A configuration problem, with a message meant for the user."""


class ConfigModel(BaseModel):
    """Base of every config model, an experiment's or an entry inside one (e.g. one segmentation).

    Unknown keys are errors, the model is immutable, defaults are validated too, and every float
    field (in lists, tuples and mappings as well) must be finite: ``inf`` and ``nan`` are refused
    with the field's name, before any work starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class ExperimentConfig(ConfigModel):
    """Base of all experiment configs.

    Attributes:
        seed: base seed of every random draw of the run (>= 0).
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    seed: int = Field(0, ge=0)
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda"):
            raise ValueError("must be one of auto, cpu, cuda")
        return v


def even_modes(v: int) -> int:
    """Validator body: a Fourier mode count must be even and >= 2."""
    if v < 2 or v % 2:
        raise ValueError("must be an even integer >= 2 (H modes per dimension)")
    return v


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=[1, 2]"]`` -> ``{"a": 1, "b": {"c": [1, 2]}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def apply_sets(defaults: dict[str, Any], sets: list[str] | None, where: str) -> dict[str, Any]:
    """``defaults`` updated by ``--set`` items; an unknown key raises ``ValueError`` listing the allowed ones."""
    over = parse_set(sets)
    unknown = set(over) - set(defaults)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(defaults)}")
    return {**defaults, **over}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _unwrap(tp: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None`` (other unions are left as they are)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config model found at ``loc`` inside ``cls`` (``()`` is ``cls``), or ``None`` if it is no model."""
    tp: Any = cls
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
            continue
        origin, args = get_origin(tp), get_args(tp)
        if origin is dict and len(args) == 2:
            tp = args[1]
        elif origin in (list, set, frozenset) and args and isinstance(part, int):
            tp = args[0]
        elif origin is tuple and args and isinstance(part, int):
            tp = args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(part, len(args) - 1)]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def field_path(loc: tuple | list) -> str:
    """A field's location as the user writes it: ``("segmentations", 1, "lable")`` -> ``segmentations[1].lable``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_FIELD_PREFIX = re.compile(r"([A-Za-z_]\w*)((?:\[\d+\]|\.[A-Za-z_]\w*)*): (.*)", re.DOTALL)


def format_errors(cls: type[BaseModel], err: ValidationError, where: str) -> str:
    """One readable message listing each invalid field with the allowed values.

    Each line starts with the field's path as written in the config (``segmentations[1].level``).
    An unknown key lists the keys allowed where it stands (in a list entry: the entry's keys). A
    check across fields (a model validator) whose message starts with ``<field>: `` is reported
    under that field rather than under the model.
    """
    lines = [f"invalid configuration for {where}:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            model = _model_at(cls, loc[:-1]) or cls
            lines.append(f"  - {field_path(loc)}: unknown key (allowed keys: {', '.join(model.model_fields)})")
            continue
        model = _model_at(cls, loc)
        m = _FIELD_PREFIX.fullmatch(msg)
        if model is not None and m and m.group(1) in model.model_fields:  # a cross-field check naming its field
            path, text, data = field_path(loc), m.group(3), e.get("input")
            if "got" not in text and not m.group(2) and isinstance(data, dict) and m.group(1) in data:
                text += f" (got {data[m.group(1)]!r})"
            lines.append(f"  - {path + '.' if path else ''}{m.group(1)}{m.group(2)}: {text}")
            continue
        lines.append(f"  - {field_path(loc) or '(root)'}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line on what is wrong in a YAML text, with the line and column where PyYAML has them."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The ``key: value`` mapping of a YAML config file (an empty file is an empty mapping).

    Raises:
        ConfigError: the file is missing, a directory or unreadable, is not valid YAML, or its top
            level is not a mapping with string keys; the message names the file and the problem.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory, not a YAML file") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {_yaml_problem(e)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value at the top level, "
                          f"not a {type(loaded).__name__}")
    bad = [k for k in loaded if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config file {p}: keys must be names, got {bad!r}")
    return loaded


def load_config(cls: type[ExperimentConfig], path: str | Path | None = None, sets: list[str] | None = None,
                preset: str | None = None, where: str = "experiment", extra: dict | None = None) -> ExperimentConfig:
    """Build and validate a config: defaults <- preset <- YAML file <- ``extra`` <- ``--set``."""
    data: dict[str, Any] = {}
    if preset:
        if preset not in cls.presets:
            raise ConfigError(f"preset {preset!r} is not defined for {where} (available: {', '.join(cls.presets) or 'none'})")
        data = _merge(data, cls.presets[preset])
    if path is not None:
        data = _merge(data, read_yaml_mapping(path))
    data = _merge(data, extra or {})
    data = _merge(data, parse_set(sets))
    try:
        return cls(**data)
    except ValidationError as e:
        raise ConfigError(format_errors(cls, e, where)) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
