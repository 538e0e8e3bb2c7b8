/**
 * Contract signed -> welcome email, from a SvelteKit route with raw `pg` SQL
 * (docs/use-cases.md, case 1). The review blocker of the hand-written version
 * was "no transaction wrapping": here the contract UPDATE and Herald's event
 * share one transaction, and any error rolls both back.
 *
 * In the app, src/routes/contracts/[id]/sign/+server.ts would be:
 *
 *   export const POST: RequestHandler = async ({ params, request }) =>
 *     json({ eventId: await signContract(pool, Number(params.id),
 *                                        { traceparent: request.headers.get("traceparent") }) });
 *
 * Run it from the command line (DATABASE_URL also read from the environment):
 *
 *   npx tsx sveltekit-contract-signed.ts postgresql://user@host/db [--contract-id N] [--fail]
 *
 * `--fail` throws after the enqueue, before COMMIT: nothing is left behind.
 */
import pg from "pg";

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS contracts (
    id bigint PRIMARY KEY,
    status text NOT NULL,
    player_name text NOT NULL,
    parent_name text NOT NULL,
    parent_email text,
    team_name text NOT NULL,
    team_groupme_share_url text NOT NULL
  )`;

/** Run `work` inside BEGIN/COMMIT on one pooled connection; ROLLBACK on any error. */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK");
    throw err;
  } finally {
    client.release();
  }
}

/** Herald's event, in the client's open transaction; returns the event id. */
export async function enqueue(
  client: pg.PoolClient,
  subject: string,
  payload: object,
  aggregate?: { type: string; id: string },
  headers: Record<string, string> = {},
): Promise<string> {
  const { rows } = await client.query<{ event_id: string }>(
    "SELECT herald_enqueue($1, $2::jsonb, $3, $4, $5::jsonb) AS event_id",
    [subject, JSON.stringify(payload), aggregate?.type ?? null, aggregate?.id ?? null, JSON.stringify(headers)],
  );
  return rows[0].event_id;
}

export async function signContract(
  pool: pg.Pool,
  contractId: number,
  opts: { traceparent?: string | null; fail?: boolean } = {},
): Promise<string> {
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query(
      `INSERT INTO contracts (id, status, player_name, parent_name, parent_email, team_name, team_groupme_share_url)
       VALUES ($1, 'signed', 'Sam Lee', 'Alex Lee', 'alex@example.com', 'U12 Tigers',
               'https://groupme.com/join_group/123/abc')
       ON CONFLICT (id) DO UPDATE SET status = 'signed'
       RETURNING *`,
      [contractId],
    );
    const c = rows[0];
    const eventId = await enqueue(
      client,
      "events.contract.signed",
      {
        contract_id: Number(c.id),
        status: c.status,
        player: { name: c.player_name },
        parent: { name: c.parent_name, email: c.parent_email },
        team: { name: c.team_name, groupme_share_url: c.team_groupme_share_url },
      },
      { type: "contract", id: String(c.id) },
      opts.traceparent ? { traceparent: opts.traceparent } : {},
    );
    if (opts.fail) throw new Error("simulated failure after the enqueue, before the commit");
    return eventId;
  });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const url = args.find((a) => !a.startsWith("--")) ?? process.env.DATABASE_URL;
  const idArg = args.indexOf("--contract-id");
  const contractId = idArg >= 0 ? Number(args[idArg + 1]) : 42;
  if (!url) {
    console.error("usage: sveltekit-contract-signed.ts DATABASE_URL [--contract-id N] [--fail]");
    return 2;
  }
  const pool = new pg.Pool({ connectionString: url });
  try {
    await pool.query(SCHEMA);
    const eventId = await signContract(pool, contractId, {
      traceparent: process.env.TRACEPARENT,
      fail: args.includes("--fail"),
    });
    console.log(eventId);
    return 0;
  } catch (err) {
    console.error(`rolled back: ${err instanceof Error ? err.message : err}`);
    return 1;
  } finally {
    await pool.end();
  }
}

process.exitCode = await main();
