"""Flags derived from the library's option dataclasses: one field, one flag.

The field's default is the flag's default and its ``help`` metadata the flag's help
(:func:`maskedlm.training.config.arg`), so no default is written twice. The type picks
the argparse form: ``bool`` a switch (``--no-X`` when it defaults to on; ``--X/--no-X``
when ``None`` means "the recipe's"), ``Literal`` choices, ``list[str]`` a repeatable
option, ``X | None`` an optional ``X``.

>>> import argparse
>>> from maskedlm.training.config import TrainConfig
>>> p = argparse.ArgumentParser()
>>> add_fields(p, TrainConfig, ["lr", "schedule", "progress"])
>>> a = p.parse_args(["--lr", "3e-4", "--no-progress"])
>>> a.lr, a.schedule, a.progress
(0.0003, None, False)
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def _optional_value(value: str, expected: str) -> str:
    if value != expected:
        raise argparse.ArgumentTypeError(f"takes no value or {expected!r}, got {value!r}")
    return value


def _flag(f: dataclasses.Field, hint: Any) -> tuple[str, dict[str, Any]]:
    """The flag's name and ``add_argument`` keywords for field ``f`` of type ``hint``."""
    meta = f.metadata
    name = meta.get("flag", "--" + f.name.replace("_", "-"))
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    kw: dict[str, Any] = {"dest": f.name, "default": default, "help": meta["help"]}
    if "metavar" in meta:
        kw["metavar"] = meta["metavar"]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    base = args[0] if is_union and len(args) == 1 else hint
    if "optional_value" in meta:  # --resume / --resume auto
        value = meta["optional_value"]
        kw.update(nargs="?", const=True, type=lambda v: _optional_value(v, value))
    elif base is bool and (default is None or default is True and not name.startswith("--no-")):
        kw["action"] = argparse.BooleanOptionalAction  # None: "the recipe's"; True: --no-X
    elif base is bool:
        kw["action"] = "store_false" if name.startswith("--no-") else "store_true"
        kw["help"] += " (default: off)"  # the switch is off unless given
    elif typing.get_origin(base) is Literal:
        kw["choices"] = list(typing.get_args(base))
    elif typing.get_origin(base) is list:
        kw["action"] = "append"
    else:
        kw["type"] = base
    return name, kw


def add_fields(parser: argparse.ArgumentParser, cls: type, names: Iterable[str] | None = None,
               skip: Iterable[str] = ()) -> None:
    """A flag for each field of dataclass ``cls`` (those in ``names``, in the class's
    order, or all but ``skip`` and the fields marked ``cli=False``)."""
    hints = typing.get_type_hints(cls)
    wanted, skip = (set(names) if names is not None else None), set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skip or (wanted is not None and f.name not in wanted):
            continue
        if wanted is None and f.metadata.get("cli") is False:
            continue
        name, kw = _flag(f, hints[f.name])
        parser.add_argument(name, **kw)


def from_args(cls: type[T], a: argparse.Namespace, **given: Any) -> T:
    """``cls`` made of the parsed flags that are its fields (others keep their defaults),
    plus ``given``; fields that are no flag (``cli=False``) are never read from ``a``."""
    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if hasattr(a, f.name) and f.name not in given and f.metadata.get("cli") is not False}
    return cls(**values, **given)
