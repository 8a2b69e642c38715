"""The package version: a leaf every module may import (never the front door for it)."""

__version__ = "0.1.0"
