"""What the user set on an ``activelab run`` command line: each option and each key of each config.

:func:`collect_settings` turns the arguments into :class:`Setting` s (key, value, where it came
from) without asking jsonargparse, and :func:`class_configs` finds the ``class_path`` /
``init_args`` values among them, each with the class path in force at that point. The checks of
:mod:`activelab_lightning.cli.errors` run on these.

Example::

    >>> [(s.key, s.value) for s in collect_settings(["--loop.rounds", "3", "--seed=1"], {"seed"})]
    [('loop.rounds', '3'), ('seed', '1')]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "INVALID",
    "META_OPTIONS",
    "ClassConfig",
    "Setting",
    "class_configs",
    "collect_settings",
    "load_yaml",
    "prefixes",
    "short",
]

#: Options of the parser that are no config keys.
META_OPTIONS = frozenset({"help", "print_config", "config"})
#: Keys of a ``class_path`` dict that are not the class's parameters.
_CLASS_KEYS = frozenset({"class_path", "init_args", "dict_kwargs", "__path__"})


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key the user set, where, and to what.

    Attributes:
        key: Dotted config key (``callback.query_size``); for a command-line option, its name.
        value: As given: the option's string (``None`` for a bare flag) or the YAML value.
        origin: The config file (or ``"the --config string"``); ``None`` for the command line.
    """

    key: str
    value: Any
    origin: str | None = None

    @property
    def from_command_line(self) -> bool:
        """Whether the setting is a command-line option."""
        return self.origin is None

    def where(self, *, brief: bool = False) -> str:
        """The setting in the user's words: ``--loop.rounds 3`` or ``callback.query_size: 10 in a.yaml``.

        Args:
            brief: For a config's nested value (a ``class_path`` dict), name only the file.
        """
        if self.from_command_line:
            return f"--{self.key}" if self.value is None else f"--{self.key} {short(self.value)}"
        if brief and isinstance(self.value, (dict, list)):
            return f"in {self.origin}"
        return f"{self.key}: {short(self.value)} in {self.origin}"

    def candidates(self) -> list[Any]:
        """The value as given and, for a command-line string, as YAML would load it."""
        values = [self.value]
        if self.from_command_line and isinstance(self.value, str):
            loaded = load_yaml(self.value)
            if loaded is not INVALID and loaded != self.value:
                values.append(loaded)
        return values


INVALID = object()


def load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return INVALID


def short(value: Any, limit: int = 60) -> str:
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prefixes(key: str) -> Iterator[str]:
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def collect_settings(argv: Sequence[str], leaves: Iterable[str]) -> list[Setting]:
    """Every setting of a command line, in order: its options and the keys of each ``--config``.

    Args:
        argv: The arguments after ``activelab run``.
        leaves: The parser's keys; a config's nested mapping stops at a known key (its value is the
            key's value, e.g. a ``class_path`` dict) and is walked into otherwise.

    Returns:
        One :class:`Setting` per option, and per leaf key of each config file or string.
    """
    leaves = frozenset(leaves)
    settings: list[Setting] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            i += 1  # a positional argument: jsonargparse names it itself
            continue
        name, eq, inline = token[2:].partition("=")
        value: str | None
        if eq:
            value, i = inline, i + 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value, i = argv[i + 1], i + 2
        else:
            value, i = None, i + 1
        if name == "config" and value is not None:
            settings.extend(_config_settings(value, leaves))
        else:
            settings.append(Setting(name, value))
    return settings


def _config_settings(value: str, leaves: frozenset[str]) -> list[Setting]:
    path = Path(value).expanduser()
    try:
        text, origin = (
            (path.read_text(encoding="utf-8"), value) if path.is_file() else (value, "the --config string")
        )
    except OSError:
        return []
    data = load_yaml(text)
    if not isinstance(data, dict):
        return []  # not a mapping (or a missing file): jsonargparse's message names it

    def walk(prefix: str, mapping: Mapping[Any, Any]) -> Iterator[Setting]:
        for k, v in mapping.items():
            key = f"{prefix}{k}"
            if key in leaves or not isinstance(v, dict) or not v:
                yield Setting(key, v, origin)
            else:
                yield from walk(f"{key}.", v)

    return list(walk("", data))


# --------------------------------------------------------------------------- class configs
@dataclasses.dataclass
class ClassConfig:
    """A ``class_path`` / ``init_args`` value found in a setting."""

    key: str  # e.g. "model" or "trainer.logger[0]"
    class_path: str | None
    params: dict[str, Any]
    setting: Setting
    shorthand: bool = False  # given as --model.<param> on the command line


def class_configs(
    settings: Sequence[Setting], leaves: frozenset[str], subclass_keys: frozenset[str]
) -> Iterator[ClassConfig]:
    """The class configs of every setting, each with the class path in force at that point."""
    current: dict[str, str | None] = {}
    for setting in settings:
        leaf = next((p for p in prefixes(setting.key) if p in leaves), None)
        if leaf is None:
            continue
        if leaf != setting.key:  # --model.input_dim 24, --model.init_args.input_dim 24, --model.class_path X
            rest = setting.key[len(leaf) + 1 :]
            if rest == "class_path":
                current[leaf] = str(setting.value)
                yield ClassConfig(leaf, current[leaf], {}, setting)
            elif not rest.startswith("dict_kwargs."):
                param = rest.removeprefix("init_args.").split(".")[0]
                yield ClassConfig(leaf, current.get(leaf), {param: setting.value}, setting, shorthand=True)
            continue
        value = setting.value
        if setting.from_command_line and isinstance(value, str):
            loaded = load_yaml(value)
            value = loaded if isinstance(loaded, (dict, list)) else value
        if isinstance(value, str) and leaf in subclass_keys:
            current[leaf] = value
            yield ClassConfig(leaf, value, {}, setting)
        elif isinstance(value, dict) and (leaf in subclass_keys or "class_path" in value):
            if "class_path" in value:
                current[leaf] = str(value["class_path"])
            yield ClassConfig(leaf, current.get(leaf), _class_params(value), setting)
        elif isinstance(value, list):
            for n, item in enumerate(value):
                if isinstance(item, dict) and "class_path" in item:
                    yield ClassConfig(f"{leaf}[{n}]", str(item["class_path"]), _class_params(item), setting)


def _class_params(value: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in value.items() if k not in _CLASS_KEYS}
    init_args = value.get("init_args")
    if isinstance(init_args, dict):
        params.update(init_args)
    return params
