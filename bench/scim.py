"""Provisioning a company over SCIM (SPEC §10.3): 5,000 people created by the
directory's client at ``POST /scim/v2/Users`` over real HTTP, beside the same directory
command called in-process, in the same run, on PostgreSQL.

    python -m bench.scim [--people 5000] [--clients 4] [--sqlite]

Each person has a manager (the first hundred are everyone's managers) and a profile,
as a real directory sends them. The in-process figure is the application service alone
(``PutUser``): the ratio is what HTTP, SCIM's validation and the lookups cost. The
administrator's own ``PUT /v1/users`` meets the per-user rate limit; the SCIM token
does not: the last line counts the 429s of the same requests sent as the API.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import database, register
from rollcall.application.access import SYSTEM_ACTOR
from rollcall.application.commands import Profile, PutUser
from rollcall.entrypoints.api.auth import issue_token
from rollcall.entrypoints.bootstrap import jwt_secret
from rollcall.entrypoints.runtime import Runtime
from rollcall.entrypoints.scim.resources import CORE, ENTERPRISE
from rollcall.entrypoints.settings import Settings

TOKEN = "bench-scim-token-of-the-company-directory-0123"
MANAGERS = 100


def person(n: int, managers: dict[str, str]) -> dict[str, Any]:
    manager = f"m{n % MANAGERS}"
    return {
        "schemas": [CORE, ENTERPRISE],
        "userName": f"{n:05d}@corp.example.com",
        "externalId": f"E-{n}",
        "name": {"givenName": f"Given{n}", "familyName": f"Family{n}"},
        "emails": [{"value": f"p{n}@corp.example.com", "type": "work", "primary": True}],
        "timezone": "Europe/Zurich",
        "locale": "de-CH",
        ENTERPRISE: {"manager": {"value": managers[manager]}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    store = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"{args.people} people, {args.clients} clients, {store}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp, database(args.sqlite) as url:
        settings = Settings(data_dir=Path(tmp), database_url=url, scim_token=TOKEN)
        with Runtime(settings) as runtime:
            rc = runtime.rollcall
            register(rc, "admin", admin=True)
            for n in range(MANAGERS):
                register(rc, f"m{n}")
            scim = {"Authorization": f"Bearer {TOKEN}"}
            http = httpx.Client(base_url=f"{runtime.url}/scim/v2", headers=scim, timeout=60)
            managers = {}
            for n in range(MANAGERS):
                query = {"filter": f'userName eq "m{n}"'}
                managers[f"m{n}"] = http.get("/Users", params=query).json()["Resources"][0]["id"]

            began = time.perf_counter()
            for n in range(args.people):
                body = person(n, managers)
                rc.put_user(
                    PutUser(
                        actor_id=SYSTEM_ACTOR,
                        user_id=f"in-process-{n}",
                        name=f"Given{n} Family{n}",
                        email=body["emails"][0]["value"],
                        supervisor_id=f"m{n % MANAGERS}",
                        profile=Profile(body["externalId"], "Europe/Zurich", "de-CH"),
                    )
                )
            in_process = time.perf_counter() - began

            def create(n: int) -> int:
                return http.post("/Users", json=person(n, managers)).status_code

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                statuses = Counter(pool.map(create, range(args.people)))
            over_scim = time.perf_counter() - began

            listed = http.get("/Users", params={"count": 1}).json()["totalResults"]
            secret = jwt_secret(settings)
            admin = {"Authorization": f"Bearer {issue_token('admin', secret, datetime.now(UTC))}"}
            api = httpx.Client(base_url=runtime.url, headers=admin, timeout=60)
            as_api = Counter(
                api.put(
                    f"/v1/users/api-{n}",
                    json={"name": f"P {n}", "email": f"api{n}@corp.example.com"},
                ).status_code
                for n in range(200)
            )

    rate, base = args.people / over_scim, args.people / in_process
    print(f"  in-process PutUser       {base:8,.0f} users/s  ({in_process:6.2f} s)")
    print(
        f"  SCIM POST /Users         {rate:8,.0f} users/s  ({over_scim:6.2f} s)  {dict(statuses)}"
    )
    print(f"  listed by SCIM afterwards: {listed}")
    print(f"SCIM / in-process: {rate / base:.2f} (load {os.getloadavg()[0]:.2f})")
    print(f"200 PUT /v1/users as the administrator: {dict(as_api)} (the per-user rate limit)")


if __name__ == "__main__":
    main()
