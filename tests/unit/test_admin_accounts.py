"""Admin accounts of the native login: no sign-up under an admin name, `tfspawner admin`."""

import pytest
from jupyterhub import orm
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets.config import Config

from tfspawner import admincmd, cli
from tfspawner.auth import TFNativeAuthenticator

CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.authenticator_class = {authenticator!r}
c.JupyterHub.db_url = {db_url!r}
c.Authenticator.admin_users = {{"Prof"}}
c.NativeAuthenticator.minimum_password_length = 10
"""


@pytest.fixture
def db_url(tmp_path):
    """A hub's database, as the hub leaves it after its first start."""
    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    orm.new_session_factory(url)().close()
    return url


def authenticator(db_url, cls=TFNativeAuthenticator, **settings):
    config = Config()
    config.Authenticator.admin_users = {"prof"}
    config.NativeAuthenticator.minimum_password_length = 10
    for name, value in settings.items():
        setattr(config.NativeAuthenticator, name, value)
    return cls(config=config, db=orm.new_session_factory(db_url)())


def config_file(tmp_path, db_url, authenticator="tfspawner-native"):
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(CONFIG.format(authenticator=authenticator, db_url=db_url))
    return str(path)


def test_nobody_signs_up_under_an_admin_name(db_url):
    auth = authenticator(db_url)
    for name in ("prof", "Prof", "PROF"):
        assert auth.create_user(name, "a long enough password") is None
    assert UserInfo.find(auth.db, "prof") is None
    assert "prof" not in auth.get_authed_users()


def test_an_admin_name_in_allowed_users_is_not_approved_by_signing_up(db_url):
    # JupyterHub adds admin_users to a non-empty allowed_users.
    auth = authenticator(db_url)
    auth.allowed_users = {"student", "prof"}
    assert auth.get_authed_users() == {"student"}


def test_others_sign_up_and_wait_for_approval(db_url):
    auth = authenticator(db_url)
    user = auth.create_user("student", "a long enough password")
    assert user is not None and not user.is_authorized
    assert "student" not in auth.get_authed_users()


async def test_created_admin_logs_in_with_the_one_time_password(db_url):
    auth = authenticator(db_url)
    name, password, created = admincmd.create_admin(auth, "Prof")
    assert (name, created) == ("prof", True)
    assert len(password) >= 24
    assert auth.is_password_strong(password)
    assert await auth.authenticate(None, {"username": "prof", "password": password}) == "prof"
    assert await auth.authenticate(None, {"username": "prof", "password": "guess"}) is None
    assert "prof" in auth.get_authed_users()


async def test_create_replaces_what_an_earlier_sign_up_chose(db_url):
    # Under nativeauthenticator's own class, the name was open for sign-up.
    before = authenticator(db_url, cls=NativeAuthenticator, allow_2fa=True)
    taken = before.create_user("prof", "attacker's password", email="a@example.org", has_2fa=True)
    assert taken.is_authorized
    secret = taken.otp_secret

    auth = authenticator(db_url)
    _, password, created = admincmd.create_admin(auth, "prof")
    assert not created
    info = auth.get_user("prof")
    assert info.is_authorized and not info.has_2fa and info.email is None
    assert info.otp_secret != secret
    assert await auth.authenticate(None, {"username": "prof", "password": password}) == "prof"
    data = {"username": "prof", "password": "attacker's password"}
    assert await auth.authenticate(None, data) is None


async def test_the_hub_sees_a_password_reset_by_another_process(db_url):
    hub = authenticator(db_url)
    _, first, _ = admincmd.create_admin(authenticator(db_url), "prof")
    assert await hub.authenticate(None, {"username": "prof", "password": first}) == "prof"
    # The hub's session keeps a row it loaded for as long as anything holds
    # it (no expiry on commit); the command resets the password meanwhile.
    loaded = hub.get_user("prof")
    _, second, _ = admincmd.create_admin(authenticator(db_url), "prof")
    assert await hub.authenticate(None, {"username": "prof", "password": first}) is None
    assert await hub.authenticate(None, {"username": "prof", "password": second}) == "prof"
    assert loaded.is_valid_password(second)


def test_create_refuses_a_name_that_is_not_an_admin(db_url):
    with pytest.raises(admincmd.AdminError, match="student is not an admin"):
        admincmd.create_admin(authenticator(db_url), "student")


@pytest.mark.parametrize("minimum", [0, 10, 24, 40])
def test_one_time_passwords_are_long_and_differ(minimum):
    passwords = {admincmd.one_time_password(minimum) for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= max(24, minimum) for p in passwords)


def test_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert admincmd.sqlite_file("sqlite:///jupyterhub.sqlite") == tmp_path / "jupyterhub.sqlite"
    assert admincmd.sqlite_file("sqlite:////srv/jupyterhub/x.sqlite").as_posix() == (
        "/srv/jupyterhub/x.sqlite"
    )
    assert admincmd.sqlite_file("postgresql://hub:pw@db/jupyterhub") is None
    with pytest.raises(admincmd.AdminError):
        admincmd.sqlite_file("sqlite:///:memory:")


def test_open_db_never_creates_a_database(tmp_path):
    missing = tmp_path / "elsewhere.sqlite"
    with pytest.raises(admincmd.AdminError, match="no hub database at"):
        admincmd.open_db(f"sqlite:///{missing}")
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(admincmd.AdminError, match="start the hub once first"):
        admincmd.open_db(f"sqlite:///{empty}")


def test_command_prints_the_password_alone_on_stdout(tmp_path, db_url, capsys):
    config = config_file(tmp_path, db_url)
    assert cli.main(["admin", "list", "-f", config]) == 0
    assert capsys.readouterr().out == "prof: no account\n"

    assert cli.main(["admin", "create", "Prof", "-f", config]) == 0
    out, err = capsys.readouterr()
    password = out.strip()
    assert out == password + "\n" and len(password) >= 24
    assert "Created the admin account prof" in err
    assert "/hub/change-password" in err

    assert cli.main(["admin", "list", "-f", config]) == 0
    assert capsys.readouterr().out == "prof: approved\n"


@pytest.mark.parametrize(
    ("args", "authenticator_class", "message"),
    [
        (["-f", "nope.py"], "tfspawner-native", "config file nope.py not found"),
        ([], "dummy", "JupyterHub.authenticator_class is 'dummy', which keeps no passwords"),
        (["--db-url", "sqlite:///nope.sqlite"], "tfspawner-native", "no hub database at"),
        ([], "no.such.Authenticator", "cannot load JupyterHub.authenticator_class"),
    ],
)
def test_command_errors_are_one_line(
    tmp_path, db_url, capsys, monkeypatch, args, authenticator_class, message
):
    monkeypatch.chdir(tmp_path)
    config = config_file(tmp_path, db_url, authenticator_class)
    assert cli.main(["admin", "create", "prof", "-f", config, *args]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"tfspawner: {message}"), err
    assert err.count("\n") == 1
