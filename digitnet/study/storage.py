"""The Optuna storage that the workers of a study share: a journal file, or a database (docs/study.md: which)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from digitnet.errors import DigitnetError, first_line
from digitnet.files import check_writable

JOURNAL = "journal.log"  # the default storage, in the output folder


def open_storage(url: str) -> BaseStorage:
    if url.endswith(".log") and "://" not in url:
        check_writable("--storage", url, Path(url).parent)
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        lock = JournalFileOpenLock(url) if os.name == "nt" else None  # None: Optuna's symlink lock
        return JournalStorage(JournalFileBackend(url, lock_obj=lock))
    if url.startswith("sqlite:///") and ":memory:" not in url:
        check_writable("--storage", url, Path(url.removeprefix("sqlite:///")).parent)
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    import sqlalchemy.exc

    # SQLite: wait for another worker's write for up to a minute rather than fail with "database is locked".
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(5):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except ImportError as err:  # the database's driver: Optuna raises it from SQLAlchemy's ModuleNotFoundError
            driver = getattr(err.__cause__, "name", None) or "its driver"
            # psycopg2: a plain postgresql:// URL (docs/study.md: why +psycopg)
            hints = {"psycopg2": "use postgresql+psycopg://..., whose driver pip install -e '.[study]' installs",
                     "psycopg": "pip install -e '.[study]' installs it"}
            hint = hints.get(driver, "install it (the study extra holds PostgreSQL's driver, psycopg, only)")
            raise DigitnetError(f"--storage {url.split('://')[0]}://...: {driver} is not installed; {hint}") from None
        except sqlalchemy.exc.ArgumentError as err:
            raise DigitnetError(f"--storage {without_password(url)}: neither a database URL nor a *.log journal "
                                f"file ({err})") from None  # fmt: skip
        except sqlalchemy.exc.SQLAlchemyError as err:
            # Workers starting together race to create a new database's tables (SQLite: locked); a refused server fails.
            racing = url.startswith("sqlite") or not isinstance(err, sqlalchemy.exc.OperationalError)
            if attempt == 4 or not racing:
                reason = first_line(err.orig if getattr(err, "orig", None) else err)
                raise DigitnetError(f"--storage {without_password(url)}: {reason}") from None
            time.sleep(1 + attempt)


def without_password(url: str) -> str:
    """A storage as messages show it: a database URL without its password (a journal file's path as it is)."""
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # no URL: a path has no "://"
        return url
