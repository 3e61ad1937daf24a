"""Each setting declared once: a dataclass field whose `setting(...)` gives its default,
flag, environment variable and help. From that one declaration come the command lines'
flags (`add_flags`), the settings object a parsed command line or an environment makes
(`from_args`, `from_env`), the checks every value gets (`check_fields`) and the
configuration reference (`ingest.settings.reference`).

Why not pydantic-settings: every flag, variable and message of the command lines must
keep working as users type them today, and several are not what its naming would give
(`--no-grpc` sets `prefer_grpc`, `CHUNK_TITLE_PREFIX=0` the same field as
`--no-title-prefix`, `--chunk-size` fills `chunking.max_chars`); the settings stay the
frozen dataclasses the rest of the code builds with `dataclasses.replace`. What this
module adds to `dataclasses` is a metadata record and about a hundred lines of reading.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(Settings):
    ...     size: int = setting(10, flag="--size", env="DEMO_SIZE", help="how big", minimum=1)
    >>> Demo.from_env({"DEMO_SIZE": "12"}).size
    12
"""

from __future__ import annotations

import argparse
import functools
import os
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import Any, Iterator, Literal, Mapping

from ingest.errors import SettingsError


@dataclass(frozen=True, slots=True)
class Option:
    """How a user gives one setting (see `setting`)."""

    help: str
    flag: str | None = None  # None: from the environment only (the secrets)
    env: str | None = None  # None: a flag only
    group: str = ""  # which commands take the flag: they add the groups they need
    switch: bool | None = None  # a flag without a value: the value it sets (`--no-grpc` sets False)
    env_inverted: bool = False  # a switch's variable says the flag's word (QDRANT_NO_GRPC=1: prefer_grpc False)
    metavar: str | None = None
    shown_default: str | None = None  # the default in words, where the value alone would mislead
    minimum: float | None = None
    maximum: float | None = None
    secret: bool = False  # never shown: not its value, not its default


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **option: Any) -> Any:
    """A settings field: `default` and how it is given (`Option`'s fields as keywords)."""
    return field(
        default=default,
        default_factory=default_factory,
        metadata={"option": Option(help, **option)},
        repr=not option.get("secret", False),
    )


@dataclass(frozen=True, slots=True)
class Declared:
    """One setting of a settings tree: where it sits and how it is typed."""

    path: tuple[str, ...]  # field names from the root, e.g. ("store", "layout", "shards")
    option: Option
    kind: type  # str, int, float, bool or tuple
    choices: tuple[Any, ...] | None  # a Literal's values
    optional: bool  # None is a value
    default: Any

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def label(self) -> str:
        """How messages name it: its flag, else its variable."""
        return self.option.flag or self.option.env or self.name


def _kind(hint: Any) -> tuple[type, tuple[Any, ...] | None, bool]:
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        kind, choices, _ = _kind(next(a for a in args if a is not type(None)))
        return kind, choices, True
    if origin is Literal:
        return type(args[0]), args, False
    if origin is tuple:
        return tuple, None, False
    return hint, None, False


@functools.cache
def _parts(cls: type) -> tuple[Declared | tuple[str, type], ...]:
    """`cls`'s fields in order, read once per class (every settings object is checked against
    them when it is made): a `Declared` for a setting, (name, class) for a settings object it holds."""
    hints = typing.get_type_hints(cls)
    parts: list[Declared | tuple[str, type]] = []
    for f in fields(cls):
        option = f.metadata.get("option")
        if option is not None:
            kind, choices, optional = _kind(hints[f.name])
            default = f.default if f.default is not MISSING else f.default_factory()
            parts.append(Declared((f.name,), option, kind, choices, optional, default))
        elif isinstance(hints[f.name], type) and is_dataclass(hints[f.name]):
            parts.append((f.name, hints[f.name]))
    return tuple(parts)


def declared(cls: type, path: tuple[str, ...] = ()) -> Iterator[Declared]:
    """Every setting of `cls`, nested settings objects' included, in declaration order."""
    for part in _parts(cls):
        if isinstance(part, Declared):
            yield replace(part, path=(*path, part.name)) if path else part
        else:
            yield from declared(part[1], (*path, part[0]))


def env_name(cls: type, name: str) -> str:
    """The environment variable of `cls`'s setting `name` (for code that must name it: a Modal secret's keys)."""
    item = next(item for item in declared_fields(cls) if item.name == name)
    if item.option.env is None:
        raise LookupError(f"{cls.__name__}.{name} has no environment variable")
    return item.option.env


def parse(item: Declared, raw: str, where: str) -> Any:
    """`raw` read as the setting's type; a SettingsError naming `where` it came from."""
    if item.kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if item.kind is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if item.choices is not None and raw not in item.choices:
        raise SettingsError(f"{where}={raw!r} is not one of {', '.join(map(str, item.choices))}")
    try:
        return item.kind(raw)
    except ValueError:
        raise SettingsError(f"{where}={raw!r} is not a valid {item.kind.__name__}") from None


def env_value(item: Declared, env: Mapping[str, str], default: Any) -> Any:
    """The setting as the environment gives it, else `default`."""
    raw = env.get(item.option.env) if item.option.env else None
    if raw is None or raw == "":
        return default
    value = parse(item, raw, f"environment variable {item.option.env}")
    return (not value) if item.option.env_inverted else value


def add_flags(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    groups: tuple[str, ...],
    env: Mapping[str, str] = os.environ,
    *,
    defaults: Mapping[str, Any] | None = None,
    only: tuple[str, ...] | None = None,
) -> None:
    """The flags of `cls`'s settings in `groups`, each defaulting to its environment variable.
    `defaults`: other defaults by field name (a search gives up on TEI sooner than a run);
    `only`: these fields' flags alone."""
    for item in declared(cls):
        option = item.option
        if option.flag is None or option.group not in groups or (only is not None and item.name not in only):
            continue
        default = env_value(item, env, (defaults or {}).get(item.name, item.default))
        if defaults and item.name in defaults:  # the command's own default, shown as such
            item = replace(item, default=defaults[item.name], option=replace(option, shown_default=None))
        where = "; ".join(part for part in (env_text(item), default_text(item)) if part)
        text = option.help.replace("%", "%%") + (f" ({where})" if where else "")
        if option.switch is not None:
            parser.add_argument(
                option.flag, dest=item.name, action="store_const", const=option.switch, default=default, help=text
            )
            continue
        # a Literal as its choices
        metavar = option.metavar or (None if item.choices else option.flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(
            option.flag,
            dest=item.name,
            type=_flag_type(item),
            default=default,
            help=text,
            choices=item.choices,
            metavar=metavar,
        )


def _flag_type(item: Declared) -> Any:
    """int and float as argparse reads them; a bounded whole number checked as it is read,
    so that a bad one is a usage error naming the flag ("argument --port: must be ...")."""
    low, high = item.option.minimum, item.option.maximum
    if item.kind is not int or (low is None and high is None):
        return item.kind if item.kind in (int, float) else None

    def whole_number(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(_bounds(low, high, value))
        return value

    return whole_number


def _bounds(low: float | None, high: float | None, value: Any) -> str:
    if low is not None and high is not None:
        return f"must be between {_text(low)} and {_text(high)}, got {value}"
    return (
        f"must be at least {_text(low)}, got {value}"
        if low is not None
        else f"must be at most {_text(high)}, got {value}"
    )


def env_text(item: Declared) -> str:
    """How the help names the variable: a switch's with the value that does what the flag does."""
    option = item.option
    if option.env is None:
        return ""
    if option.switch is None:
        return f"env {option.env}"
    return f"env {option.env}={1 if (not option.env_inverted) == option.switch else 0}"


def default_text(item: Declared) -> str:
    option = item.option
    if option.switch is not None or option.secret:
        return ""
    shown = option.shown_default or (None if item.default is None else _text(item.default))
    return f"default {shown}" if shown else ""


def from_args(
    cls: type,
    args: argparse.Namespace | None,
    env: Mapping[str, str] = os.environ,
    *,
    defaults: Mapping[str, Any] | None = None,
) -> Any:
    """`cls` from a parsed command line: each setting from its flag where the command has
    it, else from its environment variable, else its default."""
    given = vars(args) if args is not None else {}
    return _build(cls, given, env, dict(defaults or {}))


def _build(cls: type, given: Mapping[str, Any], env: Mapping[str, str], defaults: dict[str, Any]) -> Any:
    values = {}
    for part in _parts(cls):
        if not isinstance(part, Declared):
            values[part[0]] = _build(part[1], given, env, defaults)
        elif part.option.flag is not None and part.name in given:
            values[part.name] = given[part.name]
        else:
            values[part.name] = env_value(part, env, defaults.get(part.name, part.default))
    return cls(**values)


def declared_fields(cls: type) -> tuple[Declared, ...]:
    """`cls`'s own settings (not those of the settings objects it holds)."""
    return tuple(part for part in _parts(cls) if isinstance(part, Declared))


def check_fields(settings: Any) -> None:
    """Every value against its declaration: one of a Literal's choices, within its bounds."""
    for item in declared_fields(type(settings)):
        value = getattr(settings, item.name)
        if value is None:
            continue
        if item.choices is not None and value not in item.choices:
            raise SettingsError(f"{item.label} {value!r} is not one of {', '.join(map(str, item.choices))}")
        low, high = item.option.minimum, item.option.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            raise SettingsError(f"{item.label} {_bounds(low, high, value)}")


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Settings:
    """What every settings dataclass inherits: checks from its declarations, and `from_env`."""

    __slots__ = ()

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **defaults: Any) -> Any:
        """The settings the environment gives (each variable its flag's help names), the
        declared defaults elsewhere; `defaults` by field name replace the declared ones.
        How library code, the Modal app and the integrations read the environment."""
        return from_args(cls, None, env, defaults=defaults)
