"""Load for tests/it/producers.rs: N events through herald_enqueue from
several concurrent PostgreSQL transactions.

    python enqueue_many.py DATABASE_URL TRANSACTIONS AGGREGATES_PER_TRANSACTION EVENTS

Each transaction owns its aggregates (agg-T-A), so the order of an
aggregate's events is the order its transaction enqueued them (payload `n`).
Every transaction is open before any commits (a barrier), so their rows
interleave in the outbox. Prints the number of events committed.
"""

import sys
import threading

import psycopg
from psycopg.types.json import Jsonb


def main() -> int:
    url, txns, per_txn, events = sys.argv[1], *map(int, sys.argv[2:5])
    per = events // txns
    opened = threading.Barrier(txns)
    errors: list[BaseException] = []

    def producer(t: int) -> None:
        try:
            with psycopg.connect(url) as conn, conn.transaction():
                opened.wait(timeout=60)
                for i in range(per):
                    agg = f"agg-{t}-{i % per_txn}"
                    conn.execute(
                        "SELECT herald_enqueue(%s, %s, %s, %s)",
                        (
                            "events.test.load",
                            Jsonb({"email": f"{agg}@example.com", "name": f"{agg} {i // per_txn}"}),
                            "load",
                            agg,
                        ),
                    )
        except BaseException as e:  # reported below, the test fails on it
            errors.append(e)
            opened.abort()

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(txns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        print(f"failed: {errors[0]!r}", file=sys.stderr)
        return 1
    print(per * txns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
