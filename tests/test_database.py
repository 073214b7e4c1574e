"""core.storage.settings: a DATABASE_URL whose driver is missing is a settings error (exit 2) that says what to install."""

from __future__ import annotations

import importlib.util
import traceback

import pytest

from conftest import SHIPPED_PIPELINE, run_main
from core.pipeline.config import SettingsError
from core.storage.settings import database_url
from core.storage.url import DatabaseConfigError

PASSWORD = "hunter2-s3cret"


def refusal(raw: str) -> DatabaseConfigError:
    """The error database_url raises for DATABASE_URL=`raw`, checked to hold no password anywhere."""
    with pytest.raises(DatabaseConfigError) as caught:
        database_url({"DATABASE_URL": raw})
    assert isinstance(caught.value, SettingsError)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    return caught.value


@pytest.mark.parametrize(
    "scheme, module, hint",
    [
        ("mysql", "MySQLdb", "pip install pymysql and write mysql+pymysql://, or pip install mysqlclient"),
        ("mysql+pymysql", "pymysql", "pip install pymysql"),
        (
            "postgresql+psycopg",
            "psycopg",
            "pip install psycopg2-binary and write postgresql+psycopg2://, or pip install psycopg[binary]",
        ),
    ],
)
def test_missing_driver_is_a_settings_error_that_says_what_to_install(scheme, module, hint):
    assert importlib.util.find_spec(module) is None, f"{module} is installed: pick a driver that is not"

    error = refusal(f"{scheme}://app:{PASSWORD}@db.example/prices")

    assert str(error).startswith(f"DATABASE_URL uses {scheme}://, whose driver ")
    assert str(error).endswith(f"(No module named '{module}'): {hint}")


@pytest.mark.parametrize("scheme", ["nosuchdb", "mysql+nosuchdriver"])
def test_unknown_database_or_driver_is_a_settings_error(scheme):
    error = refusal(f"{scheme}://app:{PASSWORD}@db.example/prices")

    assert str(error) == (
        f"DATABASE_URL names {scheme}://, a database or driver SQLAlchemy does not know "
        "(expected e.g. postgresql://, mysql+pymysql:// or sqlite:///path)"
    )


def test_missing_driver_stops_a_run_with_exit_2_before_any_worker_starts(tmp_path):
    result = run_main(
        ["--quiet", "--pipeline", str(SHIPPED_PIPELINE)],
        timeout_s=60,
        env={"DATABASE_URL": f"mysql://app:{PASSWORD}@127.0.0.1:9/prices", "DATA_DIR": str(tmp_path / "data")},
    )

    assert result.returncode == 2, result.stderr
    assert "pip install pymysql and write mysql+pymysql://" in result.stderr
    assert "ModuleNotFoundError" not in result.stderr and "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_the_courses_empty_user_that_is_no_role_says_which_variables_to_set(tmp_path, pg_admin):
    env_file = tmp_path / ".env.local"
    env_file.write_text(
        "export POSTGRES_USER=''\nexport POSTGRES_PASSWORD=''\nexport POSTGRES_HOST=localhost\n"
        "export POSTGRES_DB=postgres\n"
    )

    result = run_main(
        ["--quiet", "--pipeline", str(SHIPPED_PIPELINE)],
        timeout_s=60,
        env={"ENV_FILE": str(env_file), "LOGNAME": "no_such_login_role", "DATA_DIR": str(tmp_path)},
    )

    assert result.returncode == 1, result.stderr
    summary = result.stdout
    assert 'FATAL: role "no_such_login_role" does not exist' in summary
    assert (
        "POSTGRES_USER is empty, so it connected as 'no_such_login_role', the login user, as psql does; "
        "POSTGRES_PASSWORD is empty, so no password was sent (only ~/.pgpass or a trust rule lets that in); "
        "set POSTGRES_USER and POSTGRES_PASSWORD (in .env.local or the environment) to a role of the server at "
        "localhost:5432, database postgres (POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB), or set DATABASE_URL "
        "instead"
    ) in summary
