"""The native login (jupyterhub-nativeauthenticator) without sign-up for admins.

nativeauthenticator approves a sign-up under a name in ``admin_users`` at
once, so whoever reaches /hub/signup first under that name owns the hub. Here
nobody can sign up under an admin name: the account is created on the hub's
host with ``tfspawner admin create NAME``, which prints a one-time password.
Everyone else signs up as before and waits for an admin's approval.

Use it with ``c.JupyterHub.authenticator_class = "tfspawner-native"``; every
``c.NativeAuthenticator`` setting applies.
"""

from __future__ import annotations

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo

ADMIN_SIGNUP_REFUSED = (
    "{name} is an administrator's name: it cannot be signed up for here. "
    "Please choose another username."
)


class SignUpHandler(native_handlers.SignUpHandler):
    """/hub/signup, refusing admin names with a message that says so."""

    async def post(self):
        name = self.get_body_argument("username", "", strip=False)
        if not (self.authenticator.enable_signup and self.authenticator.is_admin_name(name)):
            return await super().post()
        self.set_status(403)
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            result_message=ADMIN_SIGNUP_REFUSED.format(name=name),
            alert="alert-danger",
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.finish(html)


class TFNativeAuthenticator(NativeAuthenticator):
    """nativeauthenticator, where admin accounts cannot be signed up for.

    A name in ``admin_users`` can neither sign up nor be approved by signing
    up; ``tfspawner admin create NAME`` creates its account, approved, with a
    one-time password. Logging in with it makes the user an admin, as
    ``admin_users`` always does.
    """

    def is_admin_name(self, username: str) -> bool:
        name = self.normalize_username(username)
        return name in {self.normalize_username(admin) for admin in self.admin_users}

    def create_user(self, username, password, **kwargs):
        if self.is_admin_name(username):
            self.log.warning(
                "Refused a sign-up under the admin name %s; create that account with "
                "`tfspawner admin create %s`",
                username,
                self.normalize_username(username),
            )
            return None
        return super().create_user(username, password, **kwargs)

    def get_authed_users(self):
        # nativeauthenticator counts every admin name as approved, which is
        # what approves an admin name's sign-up; count only approved accounts.
        # JupyterHub adds admin_users to allowed_users, so leave those out too.
        approved = {info.username for info in UserInfo.all_users(self.db) if info.is_authorized}
        allowed = {name for name in self.allowed_users if not self.is_admin_name(name)}
        return approved | allowed

    def get_user(self, username):
        # `tfspawner admin create` writes accounts from another process, and
        # the hub's session keeps rows it loaded once (expire_on_commit=False):
        # read the row afresh so a reset password counts at once.
        name = self.normalize_username(username)
        return self.db.query(UserInfo).populate_existing().filter(UserInfo.username == name).first()

    def get_handlers(self, app):
        return [
            (path, SignUpHandler if handler is native_handlers.SignUpHandler else handler)
            for path, handler in super().get_handlers(app)
        ]
