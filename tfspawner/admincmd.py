"""``tfspawner admin``: the admin accounts of the native login.

Nobody can sign up under an admin name (see tfspawner.auth); an admin's
account is created here, in the hub's database, with a one-time password.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

# The hub's own default: jupyterhub.sqlite in its working directory.
DEFAULT_DB_URL = "sqlite:///jupyterhub.sqlite"


class AdminError(Exception):
    pass


def one_time_password(minimum_length: int = 0) -> str:
    """A random password of at least 24 characters (and ``minimum_length``)."""
    return secrets.token_urlsafe(max(18, minimum_length))[: max(24, minimum_length)]


def sqlite_file(db_url: str) -> Path | None:
    """The file behind a SQLite URL, relative to the working directory; None for others."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        raise AdminError(f"{db_url} is not a hub's database file")
    return Path(url.database).resolve()


def load_config(config_file: str):
    # cli imports this module, so its loader is imported here, when used.
    from .cli import CommandError
    from .cli import load_config as load

    try:
        return load(config_file)
    except CommandError as e:
        raise AdminError(str(e)) from None


def authenticator_class(config):
    """The configured authenticator's class, when it keeps passwords in the hub's database."""
    from nativeauthenticator import NativeAuthenticator

    value = config.JupyterHub.get("authenticator_class", "pam")
    cls = value
    if isinstance(value, str):
        found = [ep for ep in entry_points(group="jupyterhub.authenticators") if ep.name == value]
        try:
            if found:
                cls = found[0].load()
            else:
                module, _, name = value.rpartition(".")
                cls = getattr(import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise AdminError(f"cannot load JupyterHub.authenticator_class {value!r}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, NativeAuthenticator)):
        raise AdminError(
            f"JupyterHub.authenticator_class is {value!r}, which keeps no passwords in the "
            "hub's database; its admins log in through it (Authenticator.admin_users)"
        )
    return cls


def open_db(db_url: str):
    """A session on the hub's existing database; never creates one."""
    from jupyterhub import orm
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    path = sqlite_file(db_url)
    if path is not None and not path.is_file():
        raise AdminError(
            f"no hub database at {path}: run this in the hub's working directory "
            "(/srv/jupyterhub), or give --db-url; the hub creates it when it first starts"
        )
    try:
        engine = create_engine(db_url)
        try:
            tables = inspect(engine).get_table_names()
        finally:
            engine.dispose()
        if "users" not in tables:
            raise AdminError(f"{db_url} holds no hub yet: start the hub once first")
        return orm.new_session_factory(db_url)()
    except (SQLAlchemyError, orm.DatabaseSchemaMismatch) as e:
        raise AdminError(f"cannot open the hub's database {db_url}: {e}".splitlines()[0]) from None


def authenticator(args):
    """The hub's authenticator, configured from its config, on its database."""
    config = load_config(args.config)
    cls = authenticator_class(config)
    db_url = args.db_url or config.JupyterHub.get("db_url", DEFAULT_DB_URL)
    auth = cls(config=config, db=open_db(db_url))
    auth.admin_users = {auth.normalize_username(name) for name in auth.admin_users}
    return auth


def create_admin(auth, username: str) -> tuple[str, str, bool]:
    """Create or reset ``username``'s account, approved; return (name, password, created)."""
    import bcrypt
    from nativeauthenticator.orm import UserInfo

    name = auth.normalize_username(username)
    if not auth.validate_username(name):
        raise AdminError(f"{username!r} is not a valid username for this hub")
    if name not in auth.admin_users:
        raise AdminError(
            f"{name} is not an admin: add it to TFSPAWNER_ADMIN_USERS "
            "(Authenticator.admin_users) and restart the hub first"
        )
    password = one_time_password(auth.minimum_password_length)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    info = UserInfo.find(auth.db, name)
    created = info is None
    if created:
        auth.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
    else:
        # Whoever signed up under this name before it was an admin's chose
        # the e-mail address and the two-factor secret too: replace them all.
        info.password = hashed
        info.is_authorized = True
        info.email = None
        info.login_email_sent = False
        info.has_2fa = False
        info.otp_secret = base64.b32encode(os.urandom(10)).decode()
    auth.db.commit()
    return name, password, created


def account_states(auth) -> list[tuple[str, str]]:
    from nativeauthenticator.orm import UserInfo

    states = []
    for name in sorted(auth.admin_users):
        info = UserInfo.find(auth.db, name)
        if info is None:
            states.append((name, "no account"))
        else:
            states.append((name, "approved" if info.is_authorized else "not approved"))
    return states


def cmd_create(args) -> int:
    name, password, created = create_admin(authenticator(args), args.name)
    what = "Created the admin account" if created else "Reset the password of the admin account"
    print(f"{what} {name}. Its one-time password:", file=sys.stderr)
    print(password)
    print(
        "Log in with it at /hub/login, then change it at /hub/change-password; "
        "it is not shown again.",
        file=sys.stderr,
    )
    return 0


def cmd_list(args) -> int:
    for name, state in account_states(authenticator(args)):
        print(f"{name}: {state}")
    return 0


def run(func):
    def wrapped(args) -> int:
        try:
            return func(args)
        except AdminError as e:
            print(f"tfspawner: {e}", file=sys.stderr)
        except ImportError as e:
            print(f"tfspawner: {e}; install jupyterhub-nativeauthenticator", file=sys.stderr)
        except Exception as e:
            print(f"tfspawner: {e.__class__.__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 1

    return wrapped


def add_parser(subcommands) -> None:
    admin = subcommands.add_parser("admin", help="admin accounts of the native login")
    commands = admin.add_subparsers(dest="admin_command", required=True)

    def common(parser):
        parser.add_argument(
            "-f",
            "--config",
            default="jupyterhub_config.py",
            help="the hub's config: its admin_users, login settings and database",
        )
        parser.add_argument(
            "--db-url",
            help="the hub's database, if not JupyterHub.db_url from the config "
            "(default: sqlite:///jupyterhub.sqlite in this directory)",
        )

    create = commands.add_parser(
        "create",
        help="create NAME's account, approved, with a one-time password (printed once); "
        "for an existing account, replace its password",
        description="Create the account of NAME, one of Authenticator.admin_users "
        "(TFSPAWNER_ADMIN_USERS), approved and with a random one-time password, "
        "printed once on standard output. For an existing account, replace its "
        "password, e-mail address and two-factor secret. Nobody can sign up under "
        "an admin name, so this is how an admin's account is made. Change the "
        "password at /hub/change-password after logging in.",
    )
    create.add_argument("name", metavar="NAME", help="a name in Authenticator.admin_users")
    common(create)
    create.set_defaults(func=run(cmd_create))

    listing = commands.add_parser(
        "list", help="each name in Authenticator.admin_users and its account's state"
    )
    common(listing)
    listing.set_defaults(func=run(cmd_list))
