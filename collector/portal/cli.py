"""``aftercare-collector user passwd NAME`` (portal password, from stdin) and
``user totp NAME [--off]`` (the optional second factor).

The password is read from standard input (one line; a terminal is asked twice without
echo), never from the command line where ``ps`` would show it. Audited as
``user.password_set`` by ``os-user:NAME``; the user's browser sessions end.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from collector.datadir import DataDir
from collector.errors import InvalidRequest, UnknownUser
from collector.portal.passwords import set_password
from collector.portal.totp import new_secret, provisioning_uri

__all__ = ["add_passwd_command"]

TOTP_HELP = (
    "Give the user a new TOTP second factor for the portal (RFC 6238, 6 digits, 30 s) "
    "and print its secret and otpauth:// URI once, to add to an authenticator app; "
    "--off removes it. The user needs a portal password first. docs/portal.md"
)


def add_passwd_command(
    users: Any,
    data_dir_arg: Callable[[argparse.ArgumentParser], None],
    json_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``passwd`` under the ``user`` command's sub-commands."""
    passwd = users.add_parser(
        "passwd",
        help="set the user's web portal password (read from stdin)",
        description="Set the user's portal password, read from standard input (a terminal "
        "asks twice without echo). At least 10 characters. Ends the user's signed-in "
        "browsers; clears a lockout. docs/portal.md",
    )
    data_dir_arg(passwd)
    passwd.add_argument("name", help="user name")
    json_arg(passwd)
    passwd.set_defaults(handler=_passwd)
    totp = users.add_parser(
        "totp",
        help="set up (or --off remove) the user's portal second factor",
        description=TOTP_HELP,
    )
    data_dir_arg(totp)
    totp.add_argument("name", help="user name")
    totp.add_argument("--off", action="store_true", help="remove the second factor")
    json_arg(totp)
    totp.set_defaults(handler=_totp)


def _totp(args: argparse.Namespace) -> int:
    secret = "" if args.off else new_secret()
    store = DataDir(args.data_dir).open_store()
    try:
        if store.get_user(args.name) is None:
            raise UnknownUser(args.name[:64])
        store.set_portal_totp(args.name, secret)
        action = "user.totp_removed" if args.off else "user.totp_set"
        store.append_audit(_actor(), action, args.name, {}, time.time_ns() // 1_000_000)
    finally:
        store.close()
    uri = provisioning_uri(args.name, secret) if secret else ""
    if args.json:
        print(json.dumps({"name": args.name, "secret": secret, "uri": uri}, indent=2))
    elif secret:
        print(f"secret: {secret}\nuri: {uri}")
    else:
        print(f"second factor of {args.name} removed")
    return 0


def _actor() -> str:
    return f"os-user:{getpass.getuser()}"


def _passwd(args: argparse.Namespace) -> int:
    password = _read_password()
    store = DataDir(args.data_dir).open_store()
    try:
        now = time.time_ns() // 1_000_000
        set_password(store, args.name, password, _actor(), now)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"name": args.name, "password_set": True}, indent=2, sort_keys=True))
    else:
        print(f"portal password of {args.name} set")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("new portal password: ")
        if getpass.getpass("again: ") != first:
            raise InvalidRequest("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidRequest("no password on standard input (echo it in, one line)")
    return password
