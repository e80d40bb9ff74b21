"""``get(spec)``: turn what a QKeras user writes into a quantizer module, safely (no ``eval``).

Accepted forms:

* a string ``"quantized_bits(6,0,alpha=1)"``, ``"binary"``, ``"binary(alpha='auto_po2')"``: parsed
  with :mod:`ast`; arguments must be literals (numbers, quoted strings, True/False/None, lists);
* a dict ``{"class_name": "quantized_relu", "config": {"bits": 4, "integer": 2}}`` (QKeras's
  serialized form, also what ``Quantizer.to_dict()`` writes);
* a :class:`Quantizer` (returned as is);
* ``None`` -> ``None`` (no quantizer, as QKeras), ``"linear"`` -> the identity :class:`linear`.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from typing import Any, Mapping

from hqrun.errors import QuantizerSpecError

from .base import Quantizer, registry

__all__ = ["get", "parse_spec", "valid_names"]


def valid_names() -> list[str]:
    """Names ``get`` understands, sorted."""
    return sorted(registry())


def _unknown_name(name: str, spec: Any) -> QuantizerSpecError:
    names = valid_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return QuantizerSpecError(
        f"Unknown quantizer {name!r} in spec {spec!r}.{hint} Valid quantizers: "
        f"{', '.join(names)}."
    )


def _literal(node: ast.expr, name: str, spec: str, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        text = ast.unparse(node)
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r}: {where} value {text!r} of {name} is not a literal. Use "
            f"numbers, True/False/None or quoted strings, e.g. alpha='auto_po2'."
        ) from None


def parse_spec(spec: str) -> tuple[str, list[Any], dict[str, Any]]:
    """Split ``"name(a, b, k=v)"`` into ``(name, [a, b], {k: v})`` without evaluating code."""
    text = spec.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r} is not of the form name(arg, ..., key=value), e.g. "
            "'quantized_bits(6,0,alpha=1)'."
        ) from None
    body = tree.body
    if isinstance(body, ast.Name):
        return body.id, [], {}
    if not isinstance(body, ast.Call) or not isinstance(body.func, ast.Name):
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r} is not of the form name(arg, ..., key=value), e.g. "
            "'quantized_bits(6,0,alpha=1)'."
        )
    name = body.func.id
    args = []
    for node in body.args:
        if isinstance(node, ast.Starred):
            raise QuantizerSpecError(f"Quantizer spec {spec!r}: *args are not allowed.")
        args.append(_literal(node, name, spec, "positional argument"))
    kwargs: dict[str, Any] = {}
    for kw in body.keywords:
        if kw.arg is None:
            raise QuantizerSpecError(f"Quantizer spec {spec!r}: **kwargs are not allowed.")
        kwargs[kw.arg] = _literal(kw.value, name, spec, f"argument {kw.arg}=")
    return name, args, kwargs


def _build(name: str, args: list[Any], kwargs: Mapping[str, Any], spec: Any) -> Quantizer:
    classes = registry()
    cls = classes.get(name)
    if cls is None:
        raise _unknown_name(name, spec)
    names = cls.arg_names()
    if len(args) > len(names):
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r}: {name} takes at most {len(names)} arguments "
            f"({', '.join(names)}), got {len(args)} positional."
        )
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r}: {name} has no argument {unknown[0]!r}. Valid arguments: "
            f"{', '.join(names) if names else '(none)'}."
        )
    dup = [k for k in kwargs if k in names[: len(args)]]
    if dup:
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r}: argument {dup[0]!r} of {name} is given twice "
            "(positionally and by keyword)."
        )
    try:
        return cls(*args, **kwargs)
    except QuantizerSpecError:
        raise
    except (TypeError, ValueError) as exc:  # defensive: keep the user-facing error type
        sig = inspect.signature(cls.__init__)
        raise QuantizerSpecError(
            f"Quantizer spec {spec!r}: invalid arguments for {name}{sig}: {exc}"
        ) from None


def get(spec: Any) -> Quantizer | None:
    """Return the quantizer described by ``spec`` (string, dict, Quantizer or None).

    ``None`` returns ``None``; ``"linear"`` returns the identity :class:`linear` quantizer.
    Raises :class:`~hqrun.errors.QuantizerSpecError` naming the unknown quantizer or argument and
    listing the valid ones.
    """
    if spec is None:
        return None
    if isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, str):
        name, args, kwargs = parse_spec(spec)
        return _build(name, args, kwargs, spec)
    if isinstance(spec, Mapping):
        if "class_name" not in spec:
            raise QuantizerSpecError(
                f"Quantizer dict {dict(spec)!r} needs a 'class_name' key (and optionally "
                "'config'), e.g. {'class_name': 'quantized_relu', 'config': {'bits': 4}}."
            )
        extra = set(spec) - {"class_name", "config", "module", "registered_name"}
        if extra:
            raise QuantizerSpecError(
                f"Quantizer dict {dict(spec)!r} has unexpected keys {sorted(extra)}; only "
                "'class_name' and 'config' are used."
            )
        config = spec.get("config") or {}
        if not isinstance(config, Mapping):
            raise QuantizerSpecError(
                f"Quantizer dict {dict(spec)!r}: 'config' must be a mapping of argument names to "
                "values."
            )
        return _build(str(spec["class_name"]), [], dict(config), dict(spec))
    raise QuantizerSpecError(
        f"Cannot interpret quantizer spec {spec!r} of type {type(spec).__name__}; give a string "
        "such as 'quantized_bits(6,0,alpha=1)', a {'class_name', 'config'} dict, a quantizer or "
        "None."
    )
