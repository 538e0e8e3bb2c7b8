/**
 * Vault lifecycle events from a Knex service (docs/use-cases.md, case 2).
 *
 * The hand-written version committed the vault change, then pushed to a queue
 * and lost the notification when the process died in between. Here each
 * change and its `events.vault.*` row commit together in one Knex
 * transaction, through a plain INSERT into herald_outbox (docs/producers.md):
 * Herald's relay publishes it after the commit, in order per vault.
 *
 *   npx tsx knex-vault-lifecycle.ts DATABASE_URL lifecycle VAULT_ID   # created, updated, archived, deleted
 *   npx tsx knex-vault-lifecycle.ts DATABASE_URL create|update|archive|delete VAULT_ID [--fail]
 *
 * DATABASE_URL (also read from the environment) is a PostgreSQL URL. `--fail`
 * throws after the enqueue, before the commit: neither the change nor the
 * event remains.
 */
import knexFactory, { type Knex } from "knex";

type Change = "created" | "updated" | "archived" | "deleted";

const OWNERS = ["kim@example.com", "lee@example.com"];

async function ensureSchema(db: Knex): Promise<void> {
  if (!(await db.schema.hasTable("vaults"))) {
    await db.schema.createTable("vaults", (t) => {
      t.string("id").primary();
      t.string("name").notNullable();
      t.string("state").notNullable();
    });
  }
}

/** Herald's event as a row of herald_outbox, in the transaction `trx`. */
export async function enqueue(
  trx: Knex.Transaction,
  event: {
    subject: string;
    payload: object;
    aggregate?: { type: string; id: string };
    headers?: Record<string, string>;
  },
): Promise<string> {
  const [row] = await trx("herald_outbox")
    .insert({
      subject: event.subject,
      payload: JSON.stringify(event.payload),
      aggregate_type: event.aggregate?.type ?? null,
      aggregate_id: event.aggregate?.id ?? null,
      headers: JSON.stringify(event.headers ?? {}),
    })
    .returning("event_id");
  return row.event_id;
}

export async function changeVault(
  db: Knex,
  vaultId: string,
  change: Change,
  opts: { actor?: string; fail?: boolean } = {},
): Promise<string> {
  return db.transaction(async (trx) => {
    const name = `Vault ${vaultId}`;
    if (change === "created") {
      await trx("vaults").insert({ id: vaultId, name, state: "active" });
    } else if (change === "deleted") {
      await trx("vaults").where({ id: vaultId }).delete();
    } else {
      const state = change === "archived" ? "archived" : "active";
      const n = await trx("vaults").where({ id: vaultId }).update({ state });
      if (n === 0) throw new Error(`no vault ${vaultId}`);
    }
    const eventId = await enqueue(trx, {
      subject: `events.vault.${change}`,
      payload: {
        type: change,
        at: new Date().toISOString(),
        time_zone: "Europe/Berlin",
        vault: { id: vaultId, name },
        owners: OWNERS,
        actor: opts.actor ?? "kim@example.com",
      },
      aggregate: { type: "vault", id: vaultId },
      headers: process.env.TRACEPARENT ? { traceparent: process.env.TRACEPARENT } : {},
    });
    if (opts.fail) throw new Error("simulated failure after the enqueue, before the commit");
    return eventId;
  });
}

const COMMANDS: Record<string, Change> = {
  create: "created",
  update: "updated",
  archive: "archived",
  delete: "deleted",
};

async function main(): Promise<number> {
  const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
  const url = args.length === 3 ? args.shift() : process.env.DATABASE_URL;
  const [command, vaultId] = args;
  const changes: Change[] | undefined =
    command === "lifecycle"
      ? ["created", "updated", "archived", "deleted"]
      : COMMANDS[command] !== undefined
        ? [COMMANDS[command]]
        : undefined;
  if (!url || !changes || !vaultId) {
    console.error("usage: knex-vault-lifecycle.ts DATABASE_URL lifecycle|create|update|archive|delete VAULT_ID [--fail]");
    return 2;
  }
  const db = knexFactory({ client: "pg", connection: url, pool: { min: 0, max: 2 } });
  try {
    await ensureSchema(db);
    for (const change of changes) {
      console.log(await changeVault(db, vaultId, change, { fail: process.argv.includes("--fail") }));
    }
    return 0;
  } catch (err) {
    console.error(`rolled back: ${err instanceof Error ? err.message : err}`);
    return 1;
  } finally {
    await db.destroy();
  }
}

process.exitCode = await main();
