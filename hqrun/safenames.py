"""Names that become file names, C++/Python identifiers or shell words, checked before use.

Why one module: a config value such as ``firmware.project_name`` ends up in a generated shell
script (hls4ml's ``build_lib.sh`` runs through a shell), in C++ source and in file names; a layer
name ends up in a Python ``forward()`` built with ``exec`` and in C++; a plan or study label ends
up as a directory name. Each of those is safe only for a narrow alphabet, so every such value is
checked here against a pattern before it is used, and the check names the setting and the fix.

Stdlib only (plus :mod:`hqrun.errors`), so ``hqrun.firmware`` and ``hqrun.models`` can use it
without pulling in Hydra, Lightning or Ray.
"""

from __future__ import annotations

import keyword
import os
import re
from pathlib import Path
from typing import Type

from hqrun.errors import ConfigError, HqrunError

__all__ = ["MAX_NAME", "check_name", "check_identifier", "check_output_path", "check_inside",
           "is_identifier", "is_safe_name"]

#: Longest name accepted (file systems allow 255 bytes; generated names add suffixes).
MAX_NAME = 64

#: A file or directory name: letters, digits, ``_ . + -``; no leading dot or dash (no hidden
#: files, no option-like shell words), never ``.`` or ``..``.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
#: A C++ and Python identifier in ASCII.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: C++ keywords and alternative tokens (a project or layer called ``int`` breaks the C++).
_CPP_KEYWORDS = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await
co_return co_yield decltype default delete do double dynamic_cast else enum explicit export
extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq
nullptr operator or or_eq private protected public register reinterpret_cast requires return
short signed sizeof static static_assert static_cast struct switch template this thread_local
throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t while
xor xor_eq main
""".split())


def is_safe_name(value: object) -> bool:
    """True when ``value`` is a string usable as one path component and one shell word."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME
            and _SAFE_NAME.fullmatch(value) is not None and value not in (".", ".."))


def is_identifier(value: object) -> bool:
    """True when ``value`` is an ASCII identifier that is not a C++ or Python keyword."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME
            and _IDENTIFIER.fullmatch(value) is not None
            and value not in _CPP_KEYWORDS and not keyword.iskeyword(value))


def check_name(value: object, what: str, *, error: Type[HqrunError] = ConfigError) -> str:
    """Return ``value`` if it is a safe file name / shell word, else raise ``error``.

    ``what`` names the setting in the message (e.g. ``"study.baselines entry"``).
    """
    if is_safe_name(value):
        return str(value)
    raise error(
        f"{what}={value!r} cannot be used as a file or directory name: use 1 to {MAX_NAME} "
        "letters, digits, '_', '.', '+' or '-', not starting with '.' or '-' (no spaces, "
        "slashes, quotes or shell characters such as $ ` ; |). Rename it, e.g. "
        f"{_suggest(value, identifier=False)!r}."
    )


def check_identifier(value: object, what: str, *, error: Type[HqrunError] = ConfigError) -> str:
    """Return ``value`` if it is a safe C++/Python identifier, else raise ``error``."""
    if is_identifier(value):
        return str(value)
    raise error(
        f"{what}={value!r} is not a usable identifier: it becomes a C++ name, a file name and "
        f"a word in a generated shell script, so it must be 1 to {MAX_NAME} ASCII letters, "
        "digits or '_', start with a letter or '_', and not be a C++ or Python keyword. "
        f"Rename it, e.g. {_suggest(value, identifier=True)!r}."
    )


def check_output_path(value: object, what: str, *, error: Type[HqrunError] = ConfigError) -> Path:
    """An output directory given by the user: absolute as given, or relative without ``..``.

    A relative path that climbs out with ``..`` is refused (it would leave the working tree or
    the run directory it is resolved against); an absolute path is an explicit choice and is
    accepted. Control characters (newlines in a path end up in logs and scripts) are refused.
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in str(text)):
        raise error(f"{what}={value!r} is not a usable directory path (empty or containing "
                    "control characters); pass a plain path.")
    path = Path(str(text)).expanduser()
    if not path.is_absolute() and ".." in path.parts:
        raise error(
            f"{what}={value!r} climbs out of its base directory with '..'; hqrun refuses "
            "relative output paths that leave it. Pass an absolute path if you really mean "
            f"that location (e.g. {what}={Path.cwd().joinpath(path).resolve()})."
        )
    return path


def check_inside(path: str | os.PathLike, root: str | os.PathLike, what: str, *,
                 error: Type[HqrunError] = ConfigError) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (symlinks followed)."""
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise error(f"{what} resolves to {resolved}, outside {base}; hqrun writes only inside "
                    "the run directory. Choose a name without '..' or symbolic links that leave it.")
    return resolved


def _suggest(value: object, identifier: bool) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+" if identifier else r"[^A-Za-z0-9_.+-]+", "_", str(value))
    text = text.strip("_.-+")[:MAX_NAME] or "name"
    if identifier and (text[0].isdigit() or not is_identifier(text)):
        text = ("n_" + text)[:MAX_NAME]
    return text
