"""Contract signed -> welcome email, from a SQLAlchemy service (docs/use-cases.md, case 1).

The contract's new state and Herald's outbox row are written in one
transaction: both commit, or neither does. On PostgreSQL the row goes through
`herald_enqueue(...)`; on SQLite through a plain INSERT (docs/producers.md).

    python contract_signed_sqlalchemy.py DATABASE_URL [--contract-id N] [--fail]

DATABASE_URL is a SQLAlchemy URL: postgresql+psycopg://user@host/db or
sqlite:///path/to/herald.db (the database `herald migrate` set up; this
example creates its own `contracts` table there). Also read from
$DATABASE_URL. `--fail` raises after the enqueue, before the commit, to show
that a rollback takes the event with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Contract(Base):
    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    player_name: Mapped[str] = mapped_column(String(200))
    parent_name: Mapped[str] = mapped_column(String(200))
    parent_email: Mapped[str | None] = mapped_column(String(320))
    team_name: Mapped[str] = mapped_column(String(200))
    team_groupme_share_url: Mapped[str] = mapped_column(String(500))


def enqueue(
    session: Session,
    subject: str,
    payload: dict,
    aggregate: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Add a Herald event to the session's current transaction; returns its id.

    Nothing is published unless the transaction commits.
    """
    aggregate_type, aggregate_id = aggregate if aggregate else (None, None)
    params = {
        "subject": subject,
        "payload": json.dumps(payload),
        "aggregate_type": aggregate_type,
        "aggregate_id": None if aggregate_id is None else str(aggregate_id),
        "headers": json.dumps(headers or {}),
    }
    if session.get_bind().dialect.name == "postgresql":
        return str(
            session.execute(
                text(
                    "SELECT herald_enqueue(:subject, CAST(:payload AS jsonb), "
                    ":aggregate_type, :aggregate_id, CAST(:headers AS jsonb))"
                ),
                params,
            ).scalar_one()
        )
    # SQLite: the event id is 16 bytes (a BLOB), never the text of a UUID.
    event_id = uuid.uuid4()
    session.execute(
        text(
            "INSERT INTO herald_outbox (subject, payload, aggregate_type, aggregate_id, headers, event_id) "
            "VALUES (:subject, :payload, :aggregate_type, :aggregate_id, :headers, :event_id)"
        ),
        {**params, "event_id": event_id.bytes},
    )
    return str(event_id)


def sign_contract(session: Session, contract_id: int, fail: bool = False) -> str:
    """What the FastAPI route's service does: sign, and say so to Herald."""
    contract = session.get(Contract, contract_id)
    if contract is None:
        # The example's own data: a contract waiting for its signature.
        contract = Contract(
            id=contract_id,
            status="offered",
            player_name="Sam Lee",
            parent_name="Alex Lee",
            parent_email="alex@example.com",
            team_name="U12 Tigers",
            team_groupme_share_url="https://groupme.com/join_group/123/abc",
        )
        session.add(contract)
    contract.status = "signed"
    session.flush()
    event_id = enqueue(
        session,
        "events.contract.signed",
        {
            "contract_id": contract.id,
            "status": contract.status,
            "player": {"name": contract.player_name},
            "parent": {"name": contract.parent_name, "email": contract.parent_email},
            "team": {
                "name": contract.team_name,
                "groupme_share_url": contract.team_groupme_share_url,
            },
        },
        aggregate=("contract", str(contract.id)),
        # Carry the request's trace to the worker, when there is one.
        headers={"traceparent": os.environ["TRACEPARENT"]} if "TRACEPARENT" in os.environ else None,
    )
    if fail:
        raise RuntimeError("simulated failure after the enqueue, before the commit")
    return event_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", nargs="?", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--contract-id", type=int, default=42)
    parser.add_argument("--fail", action="store_true")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("give DATABASE_URL as an argument or in the environment")

    engine = create_engine(args.database_url)
    Base.metadata.create_all(engine)
    try:
        # One transaction: committed when the block ends, rolled back on an exception.
        with Session(engine) as session, session.begin():
            event_id = sign_contract(session, args.contract_id, fail=args.fail)
    except Exception as e:  # noqa: BLE001 - the example reports and exits
        print(f"rolled back: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(event_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
