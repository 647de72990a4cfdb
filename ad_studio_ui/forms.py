"""Hyperparameter forms built from the detector registry (nothing about a detector is repeated)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ad_core.detectors import DetectorInfo, ParamSpec

#: the app's default seed: the same settings give the same model
APP_RANDOM_STATE = 0
#: the detector the Train form proposes for a first run, and why (benchmarks/unsup.md)
DEFAULT_DETECTOR = "ensemble"
DEFAULT_DETECTOR_WHY = (
    "Proposed for a first run: no detector wins on every data set, so this one averages "
    "detectors of different kinds, chosen leaving each benchmark set out (benchmarks/unsup.md)."
)


def default_detector(names: list[str]) -> str:
    """Return the detector the Train form starts on: the ensemble when it is available."""
    return DEFAULT_DETECTOR if DEFAULT_DETECTOR in names else names[0]


def _parse_int_list(text: str, name: str) -> tuple[int, ...] | None:
    text = text.strip().strip("()[]")
    if not text:
        return None
    try:
        values = tuple(int(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"'{name}' must be whole numbers separated by commas, e.g. 64, 32"
        ) from None
    if any(v < 0 for v in values):
        raise ValueError(f"'{name}' must not contain negative numbers")
    return values or None


def _parse_optional(text: str, kind: str, spec: ParamSpec) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"'{spec.name}' must be a number or empty (automatic)") from None
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        raise ValueError(f"'{spec.name}' must be between {spec.low} and {spec.high}")
    return value


def widget_default(spec: ParamSpec, default: Any) -> Any:
    """Return the value a hyperparameter's widget starts with (what the widget holds)."""
    if spec.name == "random_state" and default is None:
        default = APP_RANDOM_STATE
    if spec.kind == "bool":
        return bool(default)
    if spec.kind == "choice":
        choices = list(spec.choices or ())
        return default if default in choices else choices[0]
    if spec.kind == "int_list":
        return "" if not default else ", ".join(str(int(v)) for v in default)
    if default is None:
        return ""
    return int(default) if spec.kind == "int" else float(default)


def param_widgets(
    info: DetectorInfo, *, key_prefix: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Render one widget per hyperparameter of ``info``; return raw widget values by name.

    Call inside an ``st.form``; turn the values into detector keyword arguments with
    :func:`params_from_widgets` after the form is submitted. ``overrides`` replace the
    registry defaults (e.g. a base run's settings). Values survive a visit to another page.
    """
    from ad_studio_ui.state import kept_widget

    overrides = overrides or {}
    values: dict[str, Any] = {}
    cols = st.columns(3)
    for i, spec in enumerate(info.params):
        default = widget_default(spec, overrides.get(spec.name, spec.default))
        key = kept_widget(f"{key_prefix}_{info.name}_{spec.name}", default)
        label = spec.name.replace("_", " ")
        with cols[i % 3]:
            if spec.kind == "bool":
                values[spec.name] = st.checkbox(label, help=spec.help, key=key)
            elif spec.kind == "choice":
                values[spec.name] = st.selectbox(
                    label, list(spec.choices or ()), help=spec.help, key=key
                )
            elif isinstance(default, str):  # int lists and "automatic" (empty) numbers
                values[spec.name] = st.text_input(
                    label, placeholder="automatic", help=spec.help, key=key
                )
            elif spec.kind == "int":
                values[spec.name] = st.number_input(
                    label,
                    min_value=None if spec.low is None else int(spec.low),
                    max_value=None if spec.high is None else int(spec.high),
                    step=1,
                    help=spec.help,
                    key=key,
                )
            else:
                values[spec.name] = st.number_input(
                    label,
                    min_value=None if spec.low is None else float(spec.low),
                    max_value=None if spec.high is None else float(spec.high),
                    step=float(default) / 10 if spec.log and default else 0.01,
                    format="%g",
                    help=spec.help,
                    key=key,
                )
    return values


def params_from_widgets(info: DetectorInfo, values: dict[str, Any]) -> dict[str, Any]:
    """Return detector keyword arguments from widget values; ValueError says what is wrong."""
    params: dict[str, Any] = {}
    for spec in info.params:
        raw = values[spec.name]
        if spec.kind in ("choice", "bool"):
            # A choice's values are strings too: they are taken as picked, never parsed.
            params[spec.name] = raw
        elif spec.kind == "int_list":
            parsed = _parse_int_list(str(raw), spec.name)
            # empty: "automatic" where the detector has one, else an empty list
            if parsed is None:
                params[spec.name] = None if spec.default is None else []
            else:
                params[spec.name] = list(parsed)
        elif isinstance(raw, str):
            params[spec.name] = _parse_optional(raw, spec.kind, spec)
        elif spec.kind == "int":
            params[spec.name] = int(raw)
        elif spec.kind == "float":
            params[spec.name] = float(raw)
        else:
            params[spec.name] = raw
    return params
