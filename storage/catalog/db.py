"""Engines and the unit of work: the one transaction boundary of the catalog.

    with uow_factory() as uow:          # entering begins a transaction
        uow.conn.execute(...)           # services take the unit of work and use .conn
        uow.commit()                    # explicit; leaving without it rolls back

SQLite (the default single-node catalog) gets foreign keys switched on (otherwise
``ON DELETE CASCADE`` is silently ignored), WAL journaling (readers do not block the
writer) and a busy timeout, on every new connection.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from core.errors import ConfigurationError
from storage.exceptions import CatalogUnavailable

SQLITE_BUSY_TIMEOUT_MS = 5000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")  # a no-op ("memory") for in-memory databases
    finally:
        cursor.close()


def enable_sqlite_pragmas(engine: sa.Engine) -> sa.Engine:
    """Apply the SQLite pragmas to connections ``engine`` opens from now on (no-op elsewhere)."""
    if engine.dialect.name == "sqlite" and not sa.event.contains(engine, "connect", _sqlite_pragmas):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_engine(url: str | sa.URL | None = None, *, echo: bool | None = None, **kwargs: Any) -> sa.Engine:
    """An engine for the catalog at ``url`` (default: the catalog settings)."""
    if url is None or echo is None:
        from storage.settings import get_catalog_settings

        settings = get_catalog_settings()
        url = settings.url if url is None else url
        echo = settings.echo if echo is None else echo
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return enable_sqlite_pragmas(sa.create_engine(url, echo=echo, **kwargs))


def _where(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return repr(url)


@contextmanager
def catalog_errors() -> Iterator[None]:
    """For a command line: the driver's errors of a catalog that does not answer, is not migrated or
    has no URL at all, as ``CatalogUnavailable`` / ``ConfigurationError`` naming the catalog (its
    password hidden) and what to do. The driver's first line only: never a statement or its values."""
    try:
        yield
    except sa.exc.ArgumentError as exc:
        from storage.settings import get_catalog_settings

        url = get_catalog_settings().url
        raise ConfigurationError("CALLVAULT_CATALOG_URL", f"{url!r} is not a database URL ({exc})",
                                 hint="e.g. sqlite:////var/lib/callvault/catalog.sqlite3 or "
                                      "postgresql+psycopg://user@host:5432/callvault") from None
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        from storage.settings import get_catalog_settings

        where = _where(get_catalog_settings().url)
        said = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        if "no such table" in said or getattr(exc.orig, "sqlstate", None) == "42P01":
            raise CatalogUnavailable(f"the catalog at {where} is not migrated ({said})",
                                     hint="run `callvault storage init`, or point CALLVAULT_CATALOG_URL at "
                                          "the catalog") from None
        raise CatalogUnavailable(f"the catalog at {where} does not answer: {said}",
                                 hint="check CALLVAULT_CATALOG_URL and that the server runs") from None


def ping(engine: sa.Engine) -> None:
    """Raise if the catalog cannot answer a trivial query (a health check; the error is the driver's)."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


_CURRENT = "callvault.unit_of_work"


def current_unit_of_work(conn: sa.Connection) -> "UnitOfWork | None":
    """The unit of work ``conn`` belongs to, if any (the audit trail defers its appends to it).

    ``info`` belongs to the DBAPI connection, which a static pool (in-memory SQLite) shares
    between ``Connection`` objects: only the unit's own ``Connection`` counts."""
    uow = conn.info.get(_CURRENT)
    return uow if uow is not None and getattr(uow, "conn", None) is conn else None


class UnitOfWork:
    """One connection and one transaction. ``commit()`` is explicit and starts a fresh
    transaction, so the unit stays usable; leaving the block rolls back what is uncommitted.

    ``before_commit`` hooks run just before each commit (the audit trail appends the entries
    collected during the unit there, so its lock is held only around the append); ``anchors``
    (the audit chain's, optional) are written after a commit that asked for it, or when due."""

    conn: sa.Connection

    def __init__(self, engine: sa.Engine, *, anchors: Any = None) -> None:
        self._engine = engine
        self._transaction: sa.RootTransaction | None = None
        self.anchors = anchors
        self._hooks: dict[str, Callable[[sa.Connection], None]] = {}
        self.pending: dict[str, list[Any]] = {}
        self.anchor_after_commit = False
        self._committing: ExitStack | None = None  # open while the before-commit hooks run
        self._pipelined = False

    def __enter__(self) -> "UnitOfWork":
        self.conn = self._engine.connect()
        self._transaction = self.conn.begin()
        self.conn.info[_CURRENT] = self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._transaction = None
            self._forget()
            # ``info`` follows the DBAPI connection back into the pool: leave nothing there.
            self.conn.info.pop(_CURRENT, None)
            self.conn.close()

    def before_commit(self, name: str, hook: Callable[[sa.Connection], None]) -> None:
        self._hooks.setdefault(name, hook)

    def commit(self) -> None:
        transaction = self._active()
        with ExitStack() as self._committing:
            for hook in list(self._hooks.values()):
                hook(self.conn)
            if self._pipelined:
                _send_commit(self.conn)
        self._committing, self._pipelined = None, False
        transaction.commit()  # after a pipelined COMMIT the driver has nothing left to send
        anchor, self.anchor_after_commit = self.anchor_after_commit, False
        self._forget()
        self._transaction = self.conn.begin()
        if self.anchors is not None:  # read with this unit's connection: no second checkout while it is held
            self.anchors.write_quietly(self._engine, only_if_due=not anchor, conn=self.conn)

    def send_with_commit(self) -> None:
        """From now until the commit (called by a before-commit hook, for its last writes),
        statements are not waited for: they go to PostgreSQL with the COMMIT, in one round trip
        (psycopg's pipeline mode), and an error of theirs is raised by ``commit``. Only writes
        whose result nobody reads belong there (no RETURNING, no SELECT: a result arrives only
        at the commit). Elsewhere (SQLite, another driver, outside ``commit``): nothing changes."""
        if self._committing is None or self._pipelined or not _can_pipeline(self.conn):
            return
        self._committing.enter_context(_pipeline(self.conn))
        self._pipelined = True

    def rollback(self) -> None:
        self._active().rollback()
        self._forget()
        self._transaction = self.conn.begin()

    def _forget(self) -> None:
        self._hooks.clear()
        self.pending.clear()
        self.anchor_after_commit = False

    def _active(self) -> sa.RootTransaction:
        if self._transaction is None:
            raise RuntimeError("use the unit of work as a context manager: `with uow: ...`")
        return self._transaction


def _can_pipeline(conn: sa.Connection) -> bool:
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return False
    import psycopg

    return psycopg.Pipeline.is_supported()


class _pipeline:
    """psycopg's pipeline mode on the unit's connection; a driver error raised when the
    pipeline is synced (its statements' and the COMMIT's) is raised as SQLAlchemy's."""

    def __init__(self, conn: sa.Connection) -> None:
        self._driver = conn.connection.driver_connection
        self._pipeline: Any = None

    def __enter__(self) -> None:
        self._pipeline = self._driver.pipeline()
        self._pipeline.__enter__()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: TracebackType | None) -> None:
        import psycopg

        try:
            self._pipeline.__exit__(exc_type, exc, tb)
        except psycopg.Error as error:
            raise sa.exc.DBAPIError.instance(None, None, error, psycopg.Error) from error


def _send_commit(conn: sa.Connection) -> None:
    """Queue COMMIT in the pipeline: the pipeline's sync sends it with the statements before it."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute("COMMIT")
    finally:
        cursor.close()


def session_factory(engine: sa.Engine, anchors: Any = None) -> Callable[[], UnitOfWork]:
    """What services are given: a callable returning a fresh, un-entered unit of work."""
    return lambda: UnitOfWork(engine, anchors=anchors)
