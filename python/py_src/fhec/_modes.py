"""The execution modes every model family takes (``fhe=...``)."""

from __future__ import annotations

FHE_MODES = ("disable", "simulate", "execute")


def check_mode(fhe: str) -> str:
    if fhe not in FHE_MODES:
        raise ValueError(f"fhe must be one of {', '.join(map(repr, FHE_MODES))}; got {fhe!r}")
    return fhe
