"""Config errors of ``activelab run``: one line that names the key, the value and what to do.

When jsonargparse rejects a run's arguments, :func:`explain_parse_error` finds the culprit itself
instead of reading jsonargparse's message: it lists every setting the user gave (command-line
options and the keys of each ``--config``, :mod:`.settings`) and checks them against the
parser's own keys (``parser.get_defaults()``), the classes their ``class_path`` names and the
parameters those classes take (a jsonargparse parser of the class), in that order:

1. an unknown key (``callback.query_sise``), with the closest known key (``difflib``);
2. a ``class_path`` that cannot be imported, with the closest class of its module;
3. a value of the wrong type, with the type the key's signature declares.

Only when none of these is found does jsonargparse's own message stand, joined onto one line.

Example::

    $ activelab run --config configs/quickstart.yaml --callback.query_sise 10
    activelab run: error: unknown config key 'callback.query_sise' (--callback.query_sise 10). Did you
    mean 'callback.query_size'? Valid keys there: ... (`activelab run --help` lists every option.)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from activelab_lightning.cli.settings import (
    META_OPTIONS,
    ClassConfig,
    Setting,
    class_configs,
    collect_settings,
    prefixes,
    short,
)

__all__ = ["HELP_HINT", "ConfigError", "ParserSpec", "explain_parse_error"]

HELP_HINT = "(`activelab run --help` lists every option.)"
#: Most keys listed as "valid keys there" after an unknown key.
_MAX_LISTED = 40


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class ParserSpec:
    """What the ``activelab run`` parser declares, for naming a bad setting's expected type.

    Attributes:
        options: Top-level option → its type (``{"seed": int, ...}``).
        groups: Group key → the class whose ``__init__`` declares the group's keys (``callback``...).
        subclass_keys: Keys configured by ``class_path`` / ``init_args`` (``model``, ``data``...).
    """

    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    subclass_keys: frozenset[str] = frozenset()

    def expected_type(self, key: str) -> Any:
        """The declared type of ``key``, or ``None`` if unknown."""
        if key in self.options:
            return self.options[key]
        group, _, name = key.partition(".")
        owner = self.groups.get(group)
        return _parameter_types(owner).get(name) if owner is not None and name else None


# --------------------------------------------------------------------------- class paths
def _resolve(class_path: str) -> tuple[Any, str | None]:
    """``(class, None)``, or ``(None, "why, did you mean ...")``; ``(None, None)`` if not ours to judge."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        return None, None  # a short name: jsonargparse looks it up among the subclasses it knows
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if err.name is None or not module_name.startswith(err.name):
            return None, f"cannot be imported ({type(err).__name__}: {err})"
        return None, _missing_module(module_name)
    except Exception as err:  # a module that fails on import is the user's problem to see
        return None, f"cannot be imported ({type(err).__name__}: {err})"
    if hasattr(module, name):
        return getattr(module, name), None
    close = difflib.get_close_matches(name, _public_names(module), n=1, cutoff=0.6)
    hint = f" Did you mean class_path: {module_name}.{close[0]}?" if close else ""
    return None, f"module '{module_name}' has no attribute '{name}'.{hint}"


def _missing_module(module_name: str) -> str:
    parent_name, _, name = module_name.rpartition(".")
    parent = None
    while parent_name:
        try:
            parent = importlib.import_module(parent_name)
            break
        except ImportError:
            parent_name, _, name = parent_name.rpartition(".")
    if parent is None:
        return f"there is no module '{module_name}'; check the package name."
    close = difflib.get_close_matches(name, _public_names(parent), n=1, cutoff=0.6)
    hint = f" Did you mean module '{parent_name}.{close[0]}'?" if close else ""
    return f"module '{parent_name}' has no attribute '{name}'.{hint}"


def _public_names(module: Any) -> list[str]:
    names = {n for n in dir(module) if not n.startswith("_")}
    if hasattr(module, "__path__"):
        names.update(m.name for m in pkgutil.iter_modules(module.__path__) if not m.name.startswith("_"))
    return sorted(names)


def _class_parser(cls: Any) -> Any:
    """A jsonargparse parser of ``cls``'s parameters (``None`` if jsonargparse cannot build one)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, fail_untyped=False)
    except Exception:  # a class jsonargparse cannot read: leave it to jsonargparse's own message
        return None
    return parser


def _parameter_types(owner: Any) -> dict[str, Any]:
    """Parameter name → annotation of a class's ``__init__``.

    Resolved types where ``typing.get_type_hints`` can resolve them, else the annotations as
    written (``"int | None"``); empty for an object without a signature.
    """
    init = inspect.unwrap(getattr(owner, "__init__", owner))
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # names only imported for type checkers: show the annotations as written
        hints = {}
    try:
        parameters = inspect.signature(init).parameters
    except (TypeError, ValueError):
        return hints
    return {
        name: hints.get(name, p.annotation)
        for name, p in parameters.items()
        if p.annotation is not inspect.Parameter.empty
    }


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type):
        return tp.__name__
    text = str(tp)
    for module in ("typing.", "collections.abc.", "builtins."):
        text = text.replace(module, "")
    return text


# ------------------------------------------------------------------------------- checks
def _known_keys(leaves: frozenset[str]) -> list[str]:
    return sorted({p for leaf in leaves for p in prefixes(leaf)})


def _argv_key(key: str, leaves: frozenset[str]) -> str:
    """The key a command-line option means: itself, or the one option it abbreviates (argparse)."""
    if key in leaves or key in META_OPTIONS or any(p in leaves for p in prefixes(key)):
        return key
    matches = [k for k in leaves | META_OPTIONS if k.startswith(key)]
    return matches[0] if len(matches) == 1 else key


def _closest(key: str, candidates: Sequence[str]) -> str | None:
    """The known key closest to ``key``: among its siblings if it has any, else among all keys."""
    parent, dot, name = key.rpartition(".")
    siblings = [c.rpartition(".")[2] for c in candidates if c.rpartition(".")[0] == parent]
    if siblings:
        close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
        if close:
            return f"{parent}{dot}{close[0]}"
        if dot and any(c.startswith(f"{parent}.") for c in candidates):
            return None  # a known group: the key is not a near miss of another group's key
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown(key: str, setting: Setting, candidates: Sequence[str]) -> str:
    close = _closest(key, candidates)
    hint = f" Did you mean '{close}'?" if close else ""
    there = sorted(k for k in candidates if "." in key and k.startswith(f"{key.rsplit('.', 1)[0]}."))
    listing = f" Valid keys there: {', '.join(there)}." if there and len(there) <= _MAX_LISTED else ""
    return f"unknown config key '{key}' ({setting.where(brief=True)}).{hint}{listing}"


def _unknown_key(setting: Setting, leaves: frozenset[str]) -> str | None:
    key = _argv_key(setting.key, leaves) if setting.from_command_line else setting.key
    known = _known_keys(leaves)
    if key in META_OPTIONS or key in known or any(p in leaves for p in prefixes(key)):
        return None
    return _unknown(key, setting, known)


def _class_problem(config: ClassConfig, parsers: dict[str, Any]) -> str | None:
    """A class path that cannot be imported, or a parameter the class does not take."""
    if config.class_path is None:
        return None
    cls, why = _resolve(config.class_path)
    if why is not None:
        return f"{config.key}.class_path '{config.class_path}' ({config.setting.where(brief=True)}): {why}"
    parser = _cached_class_parser(config.class_path, cls, parsers)
    if parser is None:
        return None
    names = sorted({k.split(".")[0] for k in parser.get_defaults().keys()})
    for param in config.params:
        if param not in names:
            prefix = f"{config.key}.init_args."
            return _unknown(prefix + str(param), config.setting, [prefix + n for n in names])
    return None


def _cached_class_parser(class_path: str, cls: Any, parsers: dict[str, Any]) -> Any:
    if class_path not in parsers:
        parsers[class_path] = _class_parser(cls) if inspect.isclass(cls) else None
    return parsers[class_path]


def _rejects(parser: Any, key: str, values: Sequence[Any]) -> bool:
    """Whether ``parser`` rejects ``key`` set to each of ``values`` (checked alone, nothing required)."""
    from jsonargparse import Namespace

    for value in values:
        namespace = Namespace()
        namespace[key] = value
        try:
            parser.validate(namespace, skip_required=True)
        except (TypeError, ValueError, KeyError):
            continue
        return False
    return True


def _has_class_config(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def _bad_option_value(setting: Setting, parser: Any, leaves: frozenset[str], spec: ParserSpec) -> str | None:
    """A top-level or group option (not a class config) whose value its type rejects."""
    key = _argv_key(setting.key, leaves) if setting.from_command_line else setting.key
    if key not in leaves or key in spec.subclass_keys or key in META_OPTIONS:
        return None
    if setting.value is None and setting.from_command_line:
        return None  # a missing value: argparse says "expected one argument"
    values = setting.candidates()
    if any(_has_class_config(v) for v in values) or not _rejects(parser, key, values):
        return None
    return _expected(key, spec.expected_type(key), setting.value, setting)


def _bad_parameter_value(config: ClassConfig, parsers: Mapping[str, Any]) -> str | None:
    """A ``class_path`` class parameter whose value the class's signature rejects."""
    parser = parsers.get(config.class_path or "")
    if parser is None:
        return None
    cls, _ = _resolve(config.class_path or "")
    for param, value in config.params.items():
        # a shorthand option's value is a command-line string; a config's value is YAML already
        given = config.setting if config.shorthand else Setting(str(param), value, config.setting.origin)
        if config.shorthand and value is None:
            continue
        if any(_has_class_config(v) for v in given.candidates()):
            continue
        if _rejects(parser, str(param), given.candidates()):
            key = f"{config.key}.init_args.{param}"
            return _expected(key, _parameter_types(cls).get(str(param)), value, config.setting)
    return None


def _expected(key: str, expected: Any, value: Any, setting: Setting) -> str:
    want = f"expected {_type_name(expected)}" if expected is not None else "not a valid value"
    return f"{key}: {want}, got {short(value)!r} ({setting.where(brief=True)})."


def explain_parse_error(parser: Any, argv: Sequence[str], error: BaseException, spec: ParserSpec) -> str:
    """One line on what is wrong with ``argv``, which ``parser`` rejected with ``error``.

    Args:
        parser: The ``activelab run`` parser.
        argv: The arguments after ``activelab run``.
        error: jsonargparse's ``ArgumentError``.
        spec: The parser's declared types and class-configured keys.

    Returns:
        The message, ending in a pointer to ``activelab run --help``.
    """
    try:
        problem = _find_problem(parser, argv, spec)
    except Exception:  # the explanation must never hide the error it explains
        problem = None
    if problem is None:  # nothing found: jsonargparse's own message, on one line
        problem = " ".join(str(error).split())
        problem = problem if problem.endswith(".") else problem + "."
    return f"{problem} {HELP_HINT}"


def _find_problem(parser: Any, argv: Sequence[str], spec: ParserSpec) -> str | None:
    """The first unknown key or unimportable class, else the first rejected value; ``None`` if none."""
    leaves = frozenset(parser.get_defaults().keys())
    settings = collect_settings(argv, leaves)
    configs = list(class_configs(settings, leaves, spec.subclass_keys))
    parsers: dict[str, Any] = {}
    for setting in settings:
        problem = _unknown_key(setting, leaves)
        for config in (c for c in configs if c.setting is setting):
            problem = problem or _class_problem(config, parsers)
        if problem is not None:
            return problem
    for setting in settings:  # every key exists and every class imports: look for a bad value
        problem = _bad_option_value(setting, parser, leaves, spec)
        for config in (c for c in configs if c.setting is setting):
            problem = problem or _bad_parameter_value(config, parsers)
        if problem is not None:
            return problem
    return None
