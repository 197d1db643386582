"""Optuna storages from a URL, with passwords kept out of every message.

- ``None`` (default): the journal file ``lgn_nas_studies.log`` in the working directory
  (``JournalStorage`` + ``JournalFileBackend``; several processes on one host may share it, and
  ``optuna-dashboard lgn_nas_studies.log`` opens it).
- a path ending in ``.log``, or ``journal:PATH``: another journal file. Journal files have no
  Optuna heartbeat; ``lgn-nas search`` recovers a killed worker's trial itself
  (:mod:`search_spaces.recovery`: dead pid on this host, or a stale heartbeat attr).
- ``sqlite:///FILE``, ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (also ``postgresql+psycopg2://``),
  ``mysql+pymysql://...``: Optuna's ``RDBStorage`` with heartbeats; a worker killed in the middle
  of a trial stops beating, its trial is marked failed after ``grace_period`` seconds and put back
  in the queue (``RetryHeartbeatStaleTrialCallback``) for the next worker that asks for a trial.
"""
from __future__ import annotations

import inspect
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DEFAULT_JOURNAL", "StorageError", "mask_url", "scrub", "open_storage", "storage_kind"]

DEFAULT_JOURNAL = "lgn_nas_studies.log"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


class StorageError(ValueError):
    """A storage URL that is unknown, malformed or unreachable (the message never holds a password)."""


def mask_url(url: Optional[str]) -> str:
    """``url`` with its password replaced by ``***`` (also ``?password=`` query values)."""
    if url is None:
        return f"journal file {DEFAULT_JOURNAL}"
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: Optional[str]) -> Optional[str]:
    if not url:
        return None
    try:
        parts = urlsplit(str(url))
        if parts.password:
            return parts.password
    except ValueError:
        pass
    match = re.search(r"(?i)password=([^&]+)", str(url))
    return match.group(1) if match else None


def scrub(message: str, url: Optional[str]) -> str:
    """``message`` with ``url``'s password (and the raw URL) replaced by their masked forms."""
    text = str(message)
    if url:
        text = text.replace(str(url), mask_url(url))
        password = _password(url)
        if password:
            text = text.replace(password, "***")
    return text


def storage_kind(url: Optional[str]) -> str:
    """"journal" or "rdb" (raises :class:`StorageError` for an unknown scheme)."""
    if url is None or str(url).startswith("journal:") or str(url).endswith(".log"):
        return "journal"
    scheme = urlsplit(str(url)).scheme.split("+", 1)[0].lower()
    if scheme in RDB_SCHEMES:
        return "rdb"
    raise StorageError(
        f"unknown storage {mask_url(url)!r}: expected a journal file (PATH.log or journal:PATH), "
        f"sqlite:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB or mysql+pymysql://...")


def _retry_callback(max_retry: Optional[int]) -> Any:
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)


def _with_available_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; fall back to psycopg2 when only that is installed."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2" + url[len(scheme):]
        if scheme == "postgres":
            return "postgresql" + url[len(scheme):]
    return url


def open_storage(url: Optional[str] = None, *, heartbeat_interval: int = 30, grace_period: Optional[int] = None,
                 max_retry: Optional[int] = 3) -> Any:
    """An Optuna storage for ``url`` (see the module docstring); connection problems raise StorageError."""
    import warnings

    import optuna

    kind = storage_kind(url)
    if kind == "journal":
        path = DEFAULT_JOURNAL if url is None else str(url)[len("journal:"):] if str(url).startswith("journal:") else str(url)
        path = path[2:] if path.startswith("//") else path
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise StorageError(f"journal storage {path!r}: directory {str(parent)!r} does not exist")
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(os.fspath(Path(path).expanduser())))
        except OSError as error:
            raise StorageError(f"journal storage {path!r}: {error}") from error
    if not isinstance(heartbeat_interval, int) or heartbeat_interval < 1:
        raise StorageError(f"heartbeat_interval must be a positive int (seconds), got {heartbeat_interval!r}")
    grace = grace_period if grace_period is not None else 2 * heartbeat_interval
    kwargs: dict = dict(heartbeat_interval=heartbeat_interval, grace_period=grace)
    callback_arg = ("heartbeat_stale_trial_callback"
                    if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
                    else "failed_trial_callback")
    kwargs[callback_arg] = _retry_callback(max_retry)
    url = _with_available_driver(str(url))
    engine_kwargs = {"pool_pre_ping": True}
    if urlsplit(str(url)).scheme.startswith("postgres"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.storages.RDBStorage(str(url), engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as error:
        raise StorageError(f"storage {mask_url(url)}: a database driver is missing ({scrub(str(error), url)}); "
                           "for PostgreSQL: pip install 'psycopg[binary]' (or psycopg2-binary)") from None
    except Exception as error:  # sqlalchemy OperationalError, ArgumentError, ...
        first_line = scrub(str(error), url).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"cannot open storage {mask_url(url)}: {first_line}") from None
