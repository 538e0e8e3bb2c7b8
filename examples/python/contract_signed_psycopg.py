"""Contract signed -> welcome email, with psycopg and no ORM (docs/use-cases.md, case 1).

The contract's new state and Herald's event are written in one PostgreSQL
transaction through `herald_enqueue(...)` (docs/producers.md).

    python contract_signed_psycopg.py DATABASE_URL [--contract-id N] [--fail]

DATABASE_URL is a libpq URL (postgresql://user@host/db), also read from
$DATABASE_URL. The example creates its own `contracts` table. `--fail` raises
after the enqueue, before the commit: the rollback takes the event with it.
"""

from __future__ import annotations

import argparse
import os
import sys

import psycopg
from psycopg.types.json import Jsonb

SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    id bigint PRIMARY KEY,
    status text NOT NULL,
    player_name text NOT NULL,
    parent_name text NOT NULL,
    parent_email text,
    team_name text NOT NULL,
    team_groupme_share_url text NOT NULL
)
"""


def sign_contract(conn: psycopg.Connection, contract_id: int, fail: bool = False) -> str:
    """Sign the contract and enqueue its event, in one transaction."""
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO contracts (id, status, player_name, parent_name, parent_email,
                                   team_name, team_groupme_share_url)
            VALUES (%s, 'signed', 'Sam Lee', 'Alex Lee', 'alex@example.com',
                    'U12 Tigers', 'https://groupme.com/join_group/123/abc')
            ON CONFLICT (id) DO UPDATE SET status = 'signed'
            RETURNING id, status, player_name, parent_name, parent_email,
                      team_name, team_groupme_share_url
            """,
            (contract_id,),
        ).fetchone()
        cid, status, player, parent, email, team, share_url = row
        headers = {"traceparent": os.environ["TRACEPARENT"]} if "TRACEPARENT" in os.environ else {}
        (event_id,) = conn.execute(
            "SELECT herald_enqueue(%s, %s, %s, %s, %s)",
            (
                "events.contract.signed",
                Jsonb(
                    {
                        "contract_id": cid,
                        "status": status,
                        "player": {"name": player},
                        "parent": {"name": parent, "email": email},
                        "team": {"name": team, "groupme_share_url": share_url},
                    }
                ),
                "contract",
                str(cid),  # aggregate ids are text
                Jsonb(headers),
            ),
        ).fetchone()
        if fail:
            raise RuntimeError("simulated failure after the enqueue, before the commit")
    return str(event_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", nargs="?", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--contract-id", type=int, default=42)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give DATABASE_URL as an argument or in the environment")

    with psycopg.connect(args.database_url) as conn:
        conn.execute(SCHEMA)
        conn.commit()
        try:
            event_id = sign_contract(conn, args.contract_id, fail=args.fail)
        except Exception as e:  # noqa: BLE001 - the example reports and exits
            print(f"rolled back: {e}", file=sys.stderr)
            return 1
    print(event_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
