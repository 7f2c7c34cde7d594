"""Loading frozen, validated config dataclasses from TOML files.

Every role has one frozen dataclass config (nested dataclasses for its tables). ``load_config`` maps a
TOML document onto it: unknown keys, wrong types and failed ``__post_init__`` rules all become a
``ConfigError`` that names the file and the dotted field, e.g. ``base.toml: pretrain.steps: expected
an integer > 0, found -3``. Field help lives in ``field(metadata={"help": ...})`` as in TRL's configs.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from secure_mor.errors import ConfigError

T = TypeVar("T")


def help_field(default: Any, help: str) -> Any:
    """Declare a config field with a default and its help text (shown in docs and error messages)."""
    if isinstance(default, list | dict | set):
        raise TypeError("config fields must be immutable: use a tuple or a nested dataclass")
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return dataclasses.field(default_factory=default, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def nested(cls: type[Any], help: str) -> Any:
    """Declare a nested config table whose default is ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def require(condition: bool, field: str, message: str) -> None:
    """Raise a ``ConfigError`` naming ``field`` unless ``condition`` holds (for ``__post_init__`` rules)."""
    if not condition:
        raise ConfigError(f"{field}: {message}")


def load_config(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Read ``path`` (TOML) into the frozen dataclass ``cls``; raise ``ConfigError`` naming file and field.

    With ``table``, only that top-level table is read (absent = defaults): a command that needs the
    ``[data]`` table can share a file with the commands that own its other tables.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    prefix = ""
    if table is not None:
        document, prefix = document.get(table, {}), f"{table}."
    try:
        # Relative paths resolve once, against the file's absolute folder, whatever the working directory.
        return from_mapping(cls, document, prefix=prefix, base=path.resolve().parent)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def from_mapping(
    cls: type[T],
    data: typing.Mapping[str, Any],
    prefix: str = "",
    base: Path | None = None,
    default: T | None = None,
) -> T:
    """Build the dataclass ``cls`` from a (TOML-shaped) mapping, checking keys and types recursively.

    Relative paths are resolved against ``base`` (the config file's folder) when it is given. Fields
    the mapping leaves out keep ``default``'s values (a nested table's default is its field's default,
    which may differ from ``cls()``: a recipe's benchmark data split), else ``cls``'s defaults.
    """
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'document'}: expected a table, found {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        what = "table" if isinstance(data[unknown[0]], typing.Mapping) else "field"
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown {what} (it would be ignored); expected one of: "
            f"{', '.join(sorted(fields))}"
        )
    start_from = getattr(default, "default_for", None)  # a default that depends on the table (a data source)
    if default is not None and callable(start_from):
        default = start_from(data)
    hints = get_type_hints(cls)
    values = {
        name: _convert(
            hints[name],
            value,
            f"{prefix}{name}",
            base,
            getattr(default, name) if default is not None else _field_default(fields[name]),
        )
        for name, value in data.items()
    }
    try:
        built = dataclasses.replace(default, **values) if default is not None else cls(**values)  # type: ignore[type-var]
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None
    resolve = getattr(built, "resolve_paths", None)  # string fields that may name a path (a data source)
    return resolve(base) if base is not None and callable(resolve) else built


def beside(config_file: str | Path, path: Path) -> Path:
    """``path`` as a config file means it: absolute as given, relative to the file's folder otherwise.

    ``load_config`` already resolves the paths a file spells out; roles call this for the relative
    *defaults* they keep beside their config (a reward model, a ledger, a run folder).
    """
    return path if path.is_absolute() else Path(config_file).expanduser().resolve().parent / path


def to_mapping(config: Any) -> dict[str, Any]:
    """Turn a config dataclass back into a TOML-writable mapping (tuples become lists; None is dropped).

    Paths stay ``Path`` objects; ``write_config`` writes them as strings.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is not None:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, typing.Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def write_config(config: Any, path: Path, header: str = "") -> None:
    """Write the config dataclass ``config`` to ``path`` as TOML that ``load_config`` reads back equal.

    Paths are written absolute (resolved now), so the file means the same from any working directory.
    The file is replaced atomically: a reader never sees half of it.
    """
    import tomli_w

    def strings(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value.expanduser().resolve())
        if isinstance(value, list):
            return [strings(v) for v in value]
        if isinstance(value, dict):
            return {k: strings(v) for k, v in value.items()}
        return value

    text = header + tomli_w.dumps(strings(to_mapping(config)))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _field_default(field: dataclasses.Field[Any]) -> Any:
    """The default of ``field`` when it is a dataclass instance (a nested table's default), else None."""
    if field.default_factory is not dataclasses.MISSING:
        try:
            value = field.default_factory()
        except ConfigError:  # a table with required fields has no default to start from
            return None
    else:
        value = field.default
    return value if dataclasses.is_dataclass(value) and not isinstance(value, type) else None


def _convert(tp: Any, value: Any, name: str, base: Path | None, default: Any = None) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, name, base)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{name}: found {_kind(value)} ({value!r})")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(map(repr, allowed))}, found {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected an array, found {_kind(value)}")
        args = get_args(tp)
        item_type = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_convert(item_type, v, f"{name}[{i}]", base) for i, v in enumerate(value))
    if origin is dict or tp is dict or origin is typing.Mapping or origin is types.MappingProxyType:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a table, found {_kind(value)}")
        value_type = get_args(tp)[1] if get_args(tp) else Any
        return types.MappingProxyType(
            {str(k): _convert(value_type, v, f"{name}.{k}", base) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp):
        nested_default = default if isinstance(default, tp) else None  # type: ignore[arg-type]
        return from_mapping(tp, value, prefix=f"{name}.", base=base, default=nested_default)  # type: ignore[arg-type]
    return _convert_scalar(tp, value, name, base)


def _convert_scalar(tp: Any, value: Any, name: str, base: Path | None) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, found {_kind(value)} ({value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, found {_kind(value)} ({value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, found {_kind(value)} ({value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, found {_kind(value)} ({value!r})")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a path string, found {_kind(value)} ({value!r})")
        path = Path(value).expanduser()
        return (base / path).resolve() if base is not None and not path.is_absolute() else path
    raise TypeError(f"config type {tp!r} of {name} is not supported")  # a programming error, not user input


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
