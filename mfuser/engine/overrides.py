"""Strict ``KEY=VALUE`` config overrides for LazyConfig files.

Why not :meth:`detectron2.config.LazyConfig.apply_overrides` as it is: it creates any key it is given, so
``train.max_iters=4`` (one letter too many) is accepted and the run goes on with the default ``train.max_iter``;
and ``train.max_iter=abc`` replaces an integer by a string that fails much later, far from the command line.
Here, with Hydra's override grammar (the same parser detectron2 uses):

* ``KEY=VALUE``: ``KEY`` must exist; an unknown key is an error listing the closest existing keys;
* ``+KEY=VALUE``: adds a key that does not exist yet (its parent must exist); ``++KEY=VALUE`` adds or sets;
* the value must fit the type of the current value where it has one: an int stays an int (``abc`` or ``1.5``
  refused), a float takes an int or float, a bool only ``true``/``false``, a list a list, a config group (a
  LazyCall, a dict) only a dict of its keys; a string key takes numbers as their text (``train.output_dir=2024``).
  ``null`` is accepted everywhere (it means "unset" for the keys that allow it). Keys whose current value is
  None or an object (a ``_target_`` callable) take any value.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, List, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["OverrideError", "apply_overrides", "config_keys", "load_config_file"]

_MISSING = object()


class OverrideError(ValueError):
    """A ``KEY=VALUE`` override that names no config key, does not parse, or has a value of the wrong type."""


def config_keys(cfg, prefix: str = "") -> List[str]:
    """Every dotted key of ``cfg`` (dicts are descended, lists are not), e.g. ``["train.max_iter", ...]``."""
    keys = []
    if not isinstance(cfg, DictConfig):
        return keys
    for k in cfg.keys():
        key = f"{prefix}{k}"
        keys.append(key)
        try:
            child = cfg._get_node(k)
        except Exception:  # an unresolvable interpolation: list the key, do not descend
            continue
        if isinstance(child, DictConfig):
            keys += config_keys(child, key + ".")
    return keys


def _select(cfg, key: str):
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


def _describe(value) -> str:
    if isinstance(value, DictConfig):
        return "a config group"
    if isinstance(value, ListConfig):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _check_type(line: str, key: str, current, value):
    """``value`` converted to fit ``current``'s type, or :class:`OverrideError` naming the override."""
    if value is None or current is None:
        return value

    def refuse(expected: str):
        raise OverrideError(f"config override {line!r}: {key} is {_describe(current)}, expected {expected}, "
                            f"got {_describe(value)}")

    if isinstance(current, bool):
        if not isinstance(value, bool):
            refuse("true or false")
    elif isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            refuse("an integer")
    elif isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse("a number")
        value = float(value)
    elif isinstance(current, str):
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            refuse("a string")
        value = str(value)
    elif isinstance(current, ListConfig):
        if not isinstance(value, list):
            refuse("a list such as [a,b]")
    elif isinstance(current, DictConfig):
        if not isinstance(value, dict):
            refuse(f"a dict of its keys, or set one key such as {key}.{next(iter(current.keys()), 'KEY')}=VALUE")
    return value


def _parent_is_config(cfg, line: str, key: str) -> None:
    parts = key.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        v = _select(cfg, prefix)
        if v is _MISSING or v is None:
            raise OverrideError(f"config override {line!r}: {prefix} is not in the config, so {key} cannot be added")
        if not OmegaConf.is_config(v):
            raise OverrideError(f"config override {line!r}: {prefix} is {_describe(v)}, not a config group")


def apply_overrides(cfg, overrides: Sequence[str]):
    """Apply ``overrides`` (``KEY=VALUE``, ``+KEY=VALUE``, ``++KEY=VALUE``) to ``cfg`` in place; returns ``cfg``.

    Raises:
        OverrideError: the first override that does not parse, names an unknown key (with the closest keys),
            adds a key that exists, or has a value of the wrong type. Nothing is applied then.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    overrides = [str(o) for o in overrides]
    parser = OverridesParser.create()
    planned = []
    for line in overrides:
        try:
            (o,) = parser.parse_overrides([line])
        except HydraException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OverrideError(f"config override {line!r} does not parse ({first}); expected KEY=VALUE") from None
        key = o.key_or_group
        if o.is_delete():
            raise OverrideError(f"config override {line!r}: deleting keys is not supported")
        if o.is_sweep_override():
            raise OverrideError(f"config override {line!r}: sweeps are not supported; quote lists as 'KEY=[a,b]'")
        value = o.value()
        current = _select(cfg, key)
        if o.type == OverrideType.ADD:
            if current is not _MISSING:
                raise OverrideError(f"config override {line!r}: {key} already exists; set it with {key}=VALUE")
            _parent_is_config(cfg, line, key)
        elif o.type == OverrideType.FORCE_ADD:
            _parent_is_config(cfg, line, key)
            if current is not _MISSING:
                value = _check_type(line, key, current, value)
        else:
            if current is _MISSING:
                raise OverrideError(_unknown_key_message(cfg, line, key))
            value = _check_type(line, key, current, value)
        planned.append((key, value))
    for key, value in planned:
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    return cfg


def _unknown_key_message(cfg, line: str, key: str) -> str:
    keys = config_keys(cfg)
    close = difflib.get_close_matches(key, keys, n=5, cutoff=0.6)
    if not close:  # a misspelled middle part: compare the last part among keys of the same depth
        same_depth = [k for k in keys if k.count(".") == key.count(".")]
        close = difflib.get_close_matches(key, same_depth, n=5, cutoff=0.4)
    hint = f"; closest existing keys: {', '.join(close)}" if close else ""
    return (f"config override {line!r}: no key {key!r} in the config{hint}. "
            f"To add a new key on purpose write '+{line}'")


def load_config_file(path: str, overrides: Iterable[str] = ()) -> Any:
    """``LazyConfig.load(path)`` with :func:`apply_overrides` applied (the loading step of every tool).

    Raises:
        FileNotFoundError: no such config file.
        OverrideError: see :func:`apply_overrides`.
    """
    import os

    from detectron2.config import LazyConfig

    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path!r}")
    return apply_overrides(LazyConfig.load(path), list(overrides))
