"""The version of the installed scratchnet package, as recorded in artifacts and models."""

from __future__ import annotations

from importlib import metadata

__all__ = ["scratchnet_version"]


def scratchnet_version() -> str:
    """The installed scratchnet version, or "0+unknown" when the package is not installed."""
    try:
        return metadata.version("scratchnet")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
