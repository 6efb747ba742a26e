"""The Optuna study behind a search: its storage, its identity, its queue of candidates.

The storage is a SQLite file in the output folder by default (`sqlite:///DIR/study.db`),
so a killed search resumes where it stopped; a PostgreSQL URL lets several processes
or machines share one study. A trial whose process died is found by its stopped
heartbeat, marked failed and enqueued again with the same candidate (Optuna's
`RetryFailedTrialCallback`), so no candidate is lost and none is measured twice to
the end.
"""

from __future__ import annotations

import pathlib
import time
import warnings
from typing import Any

from edgekit import errors

# Seconds between a running trial's heartbeats, and how old the last one may be before
# the trial counts as dead (its process killed). Tests shorten them.
HEARTBEAT_SECONDS = 10
STALE_AFTER_HEARTBEATS = 3
_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2")
# Trial attributes: the candidate id, why a trial was skipped, why it failed.
PARAM = "candidate"


def optuna() -> Any:
    try:
        import optuna as optuna_lib
    except ImportError:
        raise errors.UserInputError(
            "edgekit-tune needs Optuna: pip install 'edgekit[tune]' (optuna, sqlalchemy, "
            "psycopg2-binary). " + errors.received(optuna=None)
        ) from None
    # A failed trial is reported by the search itself, in one line; not as a traceback.
    optuna_lib.logging.set_verbosity(optuna_lib.logging.ERROR)
    # Heartbeats and the retry callback are marked experimental; edgekit relies on them
    # on purpose (and its tests check what they do).
    warnings.filterwarnings("ignore", category=optuna_lib.exceptions.ExperimentalWarning)
    return optuna_lib


def default_url(output_dir: pathlib.Path) -> str:
    return f"sqlite:///{output_dir.resolve() / 'study.db'}"


def shown(url: str) -> str:
    """The URL without its password, for messages and files."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given, minus user info
        return url.split("@")[-1] if "@" in url else url


def _bad_url(url: str, what: str) -> errors.UserInputError:
    return errors.UserInputError(
        f"--storage {what}. Expected an SQLAlchemy URL: sqlite:///path/study.db (one "
        "machine; the default is sqlite:///OUTPUT_DIR/study.db) or "
        "postgresql://user:password@host:5432/database (many workers). Fix the URL, or "
        "leave --storage out. " + errors.received(storage=shown(url))
    )


def check_url(url: str) -> None:
    """Refuses a malformed storage URL or an unsupported database before any work."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except ImportError:
        optuna()  # says how to install the extra
        raise
    except Exception:  # noqa: BLE001 - sqlalchemy's ArgumentError and ValueError alike
        raise _bad_url(url, "is not a database URL") from None
    if parsed.drivername not in _SCHEMES:
        raise _bad_url(
            url, f"names the database {parsed.drivername!r}, which edgekit-tune does not use"
        )
    if parsed.drivername == "sqlite" and not parsed.database:
        raise _bad_url(
            url, "names no SQLite file (an in-memory database cannot be shared or resumed)"
        )
    if parsed.drivername.startswith("postgresql") and not (parsed.host and parsed.database):
        raise _bad_url(url, "names no PostgreSQL host or database")


def engine_url(url: str) -> str:
    """The URL with the driver edgekit installs: `postgresql://` means psycopg2.

    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg (version 3), which the
    `tune` extra does not install; psycopg2-binary ships wheels for every platform.
    """
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def open_storage(url: str, *, heartbeat_seconds: int | None = None) -> Any:
    """An Optuna RDB storage with heartbeats and retry of dead trials, or a clear error."""
    opt = optuna()
    check_url(url)
    url = engine_url(url)
    beat = heartbeat_seconds or HEARTBEAT_SECONDS
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    else:
        kwargs["connect_args"] = {"timeout": 60}
    # A trial whose heartbeat stopped is enqueued again with the same candidate.
    callback = {
        "heartbeat_stale_trial_callback": opt.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    }
    try:
        return opt.storages.RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=beat,
            grace_period=beat * STALE_AFTER_HEARTBEATS,
            **callback,
        )
    except Exception as e:  # noqa: BLE001 - the driver's OperationalError, DNS errors...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise errors.UserInputError(
            f"Cannot open the study storage {shown(url)!r}: {first[:300]}. Expected a "
            "database this machine can reach and write: check that the server runs and "
            "accepts the user and password (for PostgreSQL: pg_isready -h HOST; the "
            "database must exist), or leave --storage out to use "
            "sqlite:///OUTPUT_DIR/study.db. " + errors.received(storage=shown(url))
        ) from None


def open_study(
    storage: Any, name: str, candidate_ids: list[str], *, sampler: Any
) -> tuple[Any, bool]:
    """Creates the study and enqueues every candidate once, or loads it; (study, created).

    Several workers may start at once: the one that creates the study enqueues the
    candidates; the others wait until the queue is recorded (the `space` attribute).
    """
    opt = optuna()
    directions = ["maximize", "minimize", "minimize"]  # accuracy, size, latency
    try:
        study = opt.create_study(
            storage=storage, study_name=name, directions=directions, sampler=sampler
        )
        created = True
    except opt.exceptions.DuplicatedStudyError:
        study = opt.load_study(storage=storage, study_name=name, sampler=sampler)
        created = False
    if created:
        for cid in candidate_ids:
            study.enqueue_trial({PARAM: cid}, skip_if_exists=False)
        study.set_user_attr("space", candidate_ids)
    else:
        deadline = time.monotonic() + 60
        while "space" not in study.user_attrs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"The study {name!r} has no candidate queue after 60 s.")
            time.sleep(0.5)
    return study, created


def fail_stale(study: Any) -> None:
    """Marks trials whose process died as failed; the retry callback enqueues them again."""
    optuna().storages.fail_stale_trials(study)
