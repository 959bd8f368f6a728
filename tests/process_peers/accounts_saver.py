"""A host that saves its accounts again and again, to be killed in the middle of a save.

Usage: ``accounts_saver.py PATH``. Makes an :class:`alvaro.Host` that requires login, with the
users of :data:`USERS` (or, if PATH exists, what :meth:`Host.load` reads from it), saves it
with ``host.save(PATH)`` and prints ``ready N`` (N: the number of generation users it has).
Then, until it is killed, it adds the next generation user ``gen<k>`` (password
:func:`generation_password`) and saves again: each save holds one user more than the one
before, so a reader can tell the old content from the new. It never serves: saving is all it
does. Key derivations use 4096 rounds, so that many saves happen per second.
"""

from __future__ import annotations

import os
import sys

import alvaro
from alvaro.auth import Accounts

#: The users every saved store holds, with their passwords.
USERS = {"alice": "correct horse battery staple \u2713", "bob": "pipe|and SECRET"}


def generation_password(k: int) -> str:
    return f"generation {k} \u2713 password"


def generation_users(names: list[str]) -> list[int]:
    """The generation numbers among user names, sorted."""
    return sorted(int(name[3:]) for name in names if name.startswith("gen"))


def main() -> None:
    path = sys.argv[1]
    host = alvaro.Host(login_required=True, accounts=Accounts(iterations=4096))
    if os.path.exists(path):
        host.load(path)
    else:
        for name, password in USERS.items():
            host.add_user(name, password)
    generation = len(generation_users(host.users))
    host.save(path)
    print(f"ready {generation}", flush=True)
    while True:
        generation += 1
        host.add_user(f"gen{generation}", generation_password(generation))
        host.save(path)


if __name__ == "__main__":
    main()
