"""``aftercare-collector user passwd NAME``: set a user's portal password (from stdin).

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
from collector.errors import InvalidRequest
from collector.portal.passwords import set_password

__all__ = ["add_passwd_command"]


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


def _passwd(args: argparse.Namespace) -> int:
    password = _read_password()
    store = DataDir(args.data_dir).open_store()
    try:
        now = time.time_ns() // 1_000_000
        set_password(store, args.name, password, f"os-user:{getpass.getuser()}", now)
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
