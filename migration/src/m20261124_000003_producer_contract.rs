//! The outbox as a SQL contract for producers in any language (docs/producers.md).
//!
//! Every column but `subject` and `payload` gets a default (`event_id` made by
//! the database when omitted), `ordering_key` becomes a column the database
//! derives from `aggregate_type`/`aggregate_id`, and named CHECK constraints
//! refuse what `herald::outbox::enqueue` refuses, so that a row the database
//! accepts is a row the relay can publish. On PostgreSQL it also installs
//! `herald_enqueue(...)` and a statement-level trigger that wakes the relay for
//! any insert. On SQLite the table is rebuilt (SQLite cannot add CHECKs or a
//! generated column to an existing table), keeping every row, its `seq` and
//! the AUTOINCREMENT sequence.
//!
//! The rules are written out here, not taken from the engine's constants: a
//! migration must stay what it was when it ran. A test pins the two together.
// Over 400 lines, and left so: a released migration is never edited (split or otherwise).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Largest payload (bytes of JSON text) the relay publishes: 1 MiB.
const MAX_PAYLOAD: usize = 1_048_576;

/// One token of an event subject (PostgreSQL regex): no dot, no wildcard, no
/// whitespace or control character (Rust's `char::is_whitespace` and
/// `is_control`, spelled out so the locale cannot change them).
const PG_TOKEN: &str =
    r"[^.*>\x01-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+";

/// Character classes for SQLite's GLOB: the same characters as [`PG_TOKEN`] excludes.
const SQLITE_FORBIDDEN: &str = "'*[*>' || char(1) || '-' || char(32) || char(127) || '-' || char(160) \
     || char(5760) || char(8192) || '-' || char(8202) || char(8232) || char(8233) || char(8239) \
     || char(8287) || char(12288) || ']*'";

/// Index definitions exactly as migrations 1 and 2 made them.
const INDEXES: [&str; 3] = [
    "CREATE INDEX IF NOT EXISTS idx_herald_outbox_pending ON herald_outbox (seq) WHERE published_at IS NULL",
    "CREATE INDEX IF NOT EXISTS idx_herald_outbox_published_at ON herald_outbox (published_at) WHERE published_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_herald_outbox_held ON herald_outbox (ordering_key) \
     WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // The SQLite rebuild must be all or nothing (PostgreSQL migrations always are).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                for sql in postgres_up() {
                    db.execute_unprepared(&sql).await?;
                }
                Ok(())
            }
            DbBackend::Sqlite => sqlite_up(db).await,
            other => Err(DbErr::Migration(format!("unsupported backend {other:?}"))),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            // Undoing it would take another table rebuild; Herald only migrates up.
            return Err(DbErr::Migration(
                "the producer contract migration cannot be undone on SQLite".into(),
            ));
        }
        for sql in [
            // A plain column again, with its values (the old enqueue wrote it).
            "ALTER TABLE herald_outbox ALTER COLUMN ordering_key DROP EXPRESSION IF EXISTS",
            "DROP TRIGGER IF EXISTS herald_outbox_notify ON herald_outbox",
            "DROP FUNCTION IF EXISTS herald_outbox_notify()",
            "DROP FUNCTION IF EXISTS herald_enqueue(text, jsonb, text, text, jsonb, uuid)",
            "ALTER TABLE herald_outbox DROP CONSTRAINT IF EXISTS herald_outbox_subject_under_events, \
             DROP CONSTRAINT IF EXISTS herald_outbox_subject_valid, \
             DROP CONSTRAINT IF EXISTS herald_outbox_payload_object, \
             DROP CONSTRAINT IF EXISTS herald_outbox_payload_size, \
             DROP CONSTRAINT IF EXISTS herald_outbox_headers_valid, \
             DROP CONSTRAINT IF EXISTS herald_outbox_aggregate_pair, \
             DROP CONSTRAINT IF EXISTS herald_outbox_aggregate_type_valid, \
             DROP CONSTRAINT IF EXISTS herald_outbox_aggregate_id_valid",
            "ALTER TABLE herald_outbox ALTER COLUMN event_id DROP DEFAULT, \
             ALTER COLUMN headers DROP DEFAULT, ALTER COLUMN created_at DROP DEFAULT",
            "DROP FUNCTION IF EXISTS herald_outbox_headers_problem(text)",
            "DROP FUNCTION IF EXISTS herald_outbox_headers_problem(jsonb)",
            "DROP FUNCTION IF EXISTS herald_outbox_is_json_object(text)",
            "DROP FUNCTION IF EXISTS herald_uuidv7()",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// The CHECK constraints on PostgreSQL: (name, expression). A CHECK passes on
/// NULL, which the NOT NULL columns and `aggregate_pair` take care of.
fn postgres_checks() -> Vec<(&'static str, String)> {
    vec![
        (
            "herald_outbox_subject_under_events",
            "left(subject, 7) = 'events.'".into(),
        ),
        (
            "herald_outbox_subject_valid",
            format!("subject ~ '^{PG_TOKEN}(\\.{PG_TOKEN})+$'"),
        ),
        (
            "herald_outbox_payload_object",
            "herald_outbox_is_json_object(payload)".into(),
        ),
        (
            "herald_outbox_payload_size",
            format!("octet_length(payload) <= {MAX_PAYLOAD}"),
        ),
        (
            "herald_outbox_headers_valid",
            "headers = '{}' OR herald_outbox_headers_problem(headers) IS NULL".into(),
        ),
        (
            "herald_outbox_aggregate_pair",
            "(aggregate_type IS NULL) = (aggregate_id IS NULL)".into(),
        ),
        (
            "herald_outbox_aggregate_type_valid",
            "aggregate_type ~ '^[A-Za-z0-9_.-]+$'".into(),
        ),
        (
            "herald_outbox_aggregate_id_valid",
            r"aggregate_id !~ '[\r\n]'".into(),
        ),
    ]
}

// Long but flat: the schema as it was released, statement after statement
// (a released migration is never restructured).
fn postgres_up() -> Vec<String> {
    let mut out: Vec<String> = vec![
        // PostgreSQL 15 has no uuidv7(): 48 bits of Unix milliseconds, then
        // the random bits of a v4 UUID with the version nibble set to 7.
        "CREATE OR REPLACE FUNCTION herald_uuidv7() RETURNS uuid LANGUAGE sql VOLATILE AS $f$
           SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
         $f$"
        .into(),
        // true when `t` is the text of a JSON object (never raises).
        "CREATE OR REPLACE FUNCTION herald_outbox_is_json_object(t text) RETURNS boolean
         LANGUAGE plpgsql IMMUTABLE AS $f$
         BEGIN
           RETURN json_typeof(t::json) = 'object';
         EXCEPTION WHEN data_exception THEN
           RETURN false;
         END
         $f$"
        .into(),
        // What is wrong with a headers object, or NULL when nothing is: an
        // object of string values, names that NATS accepts (printable ASCII
        // without ':'), no CR or LF in a value, no name Herald sets itself.
        r#"CREATE OR REPLACE FUNCTION herald_outbox_headers_problem(headers jsonb) RETURNS text
         LANGUAGE plpgsql IMMUTABLE AS $f$
         DECLARE
           k text;
           v jsonb;
         BEGIN
           IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
             RETURN format('headers must be a JSON object of strings, got %s', coalesce(jsonb_typeof(headers), 'NULL'));
           END IF;
           FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
             IF k !~ '^[!-9;-~]+$' THEN
               RETURN format('header name %s must be printable ASCII without spaces or '':''', to_json(k));
             END IF;
             IF jsonb_typeof(v) <> 'string' THEN
               RETURN format('header %s must be a string, got %s', to_json(k), jsonb_typeof(v));
             END IF;
             IF (v #>> '{}') ~ '[\r\n]' THEN
               RETURN format('header %s contains CR or LF', to_json(k));
             END IF;
             IF lower(k COLLATE "C") = 'nats-msg-id' OR lower(k COLLATE "C") LIKE 'herald-%' THEN
               RETURN format('header %s is reserved for Herald (Nats-Msg-Id, Herald-*)', to_json(k));
             END IF;
           END LOOP;
           RETURN NULL;
         END
         $f$"#
            .into(),
        "CREATE OR REPLACE FUNCTION herald_outbox_headers_problem(headers text) RETURNS text
         LANGUAGE plpgsql IMMUTABLE AS $f$
         DECLARE
           j jsonb;
         BEGIN
           BEGIN
             j := headers::jsonb;
           EXCEPTION WHEN data_exception THEN
             RETURN 'headers must be a JSON object of strings (not valid JSON)';
           END;
           RETURN herald_outbox_headers_problem(j);
         END
         $f$"
        .into(),
        "ALTER TABLE herald_outbox ALTER COLUMN event_id SET DEFAULT herald_uuidv7(), \
         ALTER COLUMN headers SET DEFAULT '{}', \
         ALTER COLUMN created_at SET DEFAULT clock_timestamp()"
            .into(),
        // ordering_key: from a column every producer had to fill to one the
        // database derives. PostgreSQL cannot turn a column into a generated
        // one, so it is dropped and added back (a one-time table rewrite; the
        // value is the same as enqueue wrote). Dropping it drops the index on it.
        "DO $do$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'herald_outbox'::regclass
                      AND attname = 'ordering_key' AND NOT attisdropped AND attgenerated = '') THEN
             ALTER TABLE herald_outbox DROP COLUMN ordering_key;
           END IF;
           IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'herald_outbox'::regclass
                          AND attname = 'ordering_key' AND NOT attisdropped) THEN
             ALTER TABLE herald_outbox ADD COLUMN ordering_key varchar
               GENERATED ALWAYS AS (aggregate_type || '/' || aggregate_id) STORED;
           END IF;
         END $do$"
            .into(),
        INDEXES[2].into(),
    ];
    // PostgreSQL checks even NOT VALID constraints on every UPDATE of a row,
    // and the relay's claim updates a whole batch in one statement: a single
    // unpublished legacy row that breaks a rule would fail every claim. So
    // such rows are parked first, with the rule in last_error (the claim
    // skips parked rows); `herald outbox retry` on one then fails naming the
    // rule. Only unparked rows are touched, so running this again is a no-op.
    let violated: String = postgres_checks()
        .iter()
        .map(|(name, expr)| format!(" WHEN ({expr}) IS FALSE THEN '{name}'"))
        .collect();
    out.push(format!(
        "UPDATE herald_outbox o SET parked_at = clock_timestamp(), lease_owner = NULL, lease_until = NULL, \
           last_error = 'refused by the producer contract (herald migrate): ' || v.rule \
         FROM (SELECT seq, CASE{violated} END AS rule FROM herald_outbox \
               WHERE published_at IS NULL AND parked_at IS NULL) v \
         WHERE o.seq = v.seq AND v.rule IS NOT NULL"
    ));
    // NOT VALID: rows already in the table are not checked, so no legacy row
    // can block the migration; every new or updated row is.
    for (name, expr) in postgres_checks() {
        out.push(format!(
            "DO $do$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_constraint
                              WHERE conrelid = 'herald_outbox'::regclass AND conname = '{name}') THEN
                 ALTER TABLE herald_outbox ADD CONSTRAINT {name} CHECK ({expr}) NOT VALID;
               END IF;
             END $do$"
        ));
    }
    out.push(herald_enqueue_sql());
    // One notification per statement (PostgreSQL folds repeats within a
    // transaction), delivered at commit: the relay wakes for a row from
    // herald_enqueue, a plain INSERT, or Rust's enqueue alike.
    out.push(
        "CREATE OR REPLACE FUNCTION herald_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           PERFORM pg_notify('herald_outbox', '');
           RETURN NULL;
         END
         $f$"
        .into(),
    );
    out.push("DROP TRIGGER IF EXISTS herald_outbox_notify ON herald_outbox".into());
    out.push(
        "CREATE TRIGGER herald_outbox_notify AFTER INSERT ON herald_outbox \
         FOR EACH STATEMENT EXECUTE FUNCTION herald_outbox_notify()"
            .into(),
    );
    out
}

/// `herald_enqueue`: the same rules as the CHECKs, checked first so that the
/// error says what is wrong in words (SQLSTATE 22023, `herald_enqueue: ...`).
fn herald_enqueue_sql() -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION herald_enqueue(
             subject text,
             payload jsonb,
             aggregate_type text DEFAULT NULL,
             aggregate_id text DEFAULT NULL,
             headers jsonb DEFAULT '{{}}',
             event_id uuid DEFAULT NULL
           ) RETURNS uuid LANGUAGE plpgsql VOLATILE AS $f$
           DECLARE
             body text;
             problem text;
             id uuid := coalesce(herald_enqueue.event_id, herald_uuidv7());
           BEGIN
             IF herald_enqueue.subject IS NULL THEN
               RAISE EXCEPTION 'herald_enqueue: subject is required' USING ERRCODE = '22023';
             END IF;
             IF left(herald_enqueue.subject, 7) <> 'events.' THEN
               RAISE EXCEPTION 'herald_enqueue: subject % must start with "events."', to_json(herald_enqueue.subject)
                 USING ERRCODE = '22023';
             END IF;
             IF herald_enqueue.subject !~ '^{PG_TOKEN}(\.{PG_TOKEN})+$' THEN
               RAISE EXCEPTION 'herald_enqueue: subject % is not a valid NATS subject', to_json(herald_enqueue.subject)
                 USING ERRCODE = '22023',
                       HINT = 'dot-separated tokens, none empty, without whitespace, control characters or wildcards (* >)';
             END IF;
             IF herald_enqueue.payload IS NULL OR jsonb_typeof(herald_enqueue.payload) <> 'object' THEN
               RAISE EXCEPTION 'herald_enqueue: payload must be a JSON object, got %',
                   coalesce(jsonb_typeof(herald_enqueue.payload), 'NULL')
                 USING ERRCODE = '22023';
             END IF;
             body := herald_enqueue.payload::text;
             IF octet_length(body) > {MAX_PAYLOAD} THEN
               RAISE EXCEPTION 'herald_enqueue: payload is % bytes, over the limit of {MAX_PAYLOAD} bytes', octet_length(body)
                 USING ERRCODE = '22023';
             END IF;
             IF (herald_enqueue.aggregate_type IS NULL) <> (herald_enqueue.aggregate_id IS NULL) THEN
               RAISE EXCEPTION 'herald_enqueue: aggregate_type and aggregate_id go together: give both or neither'
                 USING ERRCODE = '22023';
             END IF;
             IF herald_enqueue.aggregate_type !~ '^[A-Za-z0-9_.-]+$' THEN
               RAISE EXCEPTION 'herald_enqueue: aggregate_type % must be letters, digits, "_", "-" or "."',
                   to_json(herald_enqueue.aggregate_type)
                 USING ERRCODE = '22023';
             END IF;
             IF herald_enqueue.aggregate_id ~ '[\r\n]' THEN
               RAISE EXCEPTION 'herald_enqueue: aggregate_id must not contain CR or LF' USING ERRCODE = '22023';
             END IF;
             problem := herald_outbox_headers_problem(coalesce(herald_enqueue.headers, '{{}}'::jsonb));
             IF problem IS NOT NULL THEN
               RAISE EXCEPTION 'herald_enqueue: %', problem USING ERRCODE = '22023';
             END IF;
             IF herald_enqueue.event_id IS NOT NULL
                AND EXISTS (SELECT 1 FROM herald_outbox o WHERE o.event_id = herald_enqueue.event_id) THEN
               RAISE EXCEPTION 'herald_enqueue: event_id % is already in the outbox', herald_enqueue.event_id
                 USING ERRCODE = '23505';
             END IF;
             INSERT INTO herald_outbox (event_id, subject, aggregate_type, aggregate_id, payload, headers)
             VALUES (id, herald_enqueue.subject, herald_enqueue.aggregate_type, herald_enqueue.aggregate_id,
                     body, coalesce(herald_enqueue.headers, '{{}}'::jsonb)::text);
             RETURN id;
           END
           $f$"#
    )
}

/// The CHECK constraints on SQLite: (name, expression). SQLite checks on an
/// UPDATE only the constraints that read a changed column, so the relay's
/// updates (leases, the published mark) never re-check a row.
fn sqlite_checks() -> Vec<(&'static str, String)> {
    let json_object = |col: &str| {
        format!(
            "CASE WHEN typeof({col}) = 'text' AND json_valid({col}) THEN json_type({col}) = 'object' ELSE 0 END"
        )
    };
    vec![
        (
            "herald_outbox_event_id_bytes",
            "typeof(event_id) = 'blob' AND length(event_id) = 16".into(),
        ),
        (
            "herald_outbox_subject_under_events",
            "typeof(subject) = 'text' AND substr(subject, 1, 7) = 'events.'".into(),
        ),
        (
            "herald_outbox_subject_valid",
            format!(
                "length(subject) > 7 AND instr(subject, '..') = 0 AND substr(subject, -1) <> '.' \
                 AND NOT subject GLOB ({SQLITE_FORBIDDEN})"
            ),
        ),
        (
            "herald_outbox_aggregate_type_valid",
            "aggregate_type IS NULL OR (typeof(aggregate_type) = 'text' AND aggregate_type <> '' \
             AND NOT aggregate_type GLOB '*[^A-Za-z0-9_.-]*')"
                .into(),
        ),
        (
            "herald_outbox_aggregate_id_valid",
            "aggregate_id IS NULL OR (typeof(aggregate_id) = 'text' \
             AND instr(aggregate_id, char(13)) = 0 AND instr(aggregate_id, char(10)) = 0)"
                .into(),
        ),
        (
            "herald_outbox_aggregate_pair",
            "(aggregate_type IS NULL) = (aggregate_id IS NULL)".into(),
        ),
        ("herald_outbox_payload_object", json_object("payload")),
        (
            "herald_outbox_payload_size",
            format!("length(CAST(payload AS BLOB)) <= {MAX_PAYLOAD}"),
        ),
        ("herald_outbox_headers_valid", json_object("headers")),
    ]
}

/// What the header triggers refuse, as one condition on a row's `headers`
/// (a JSON object): any member with a bad name, a non-string value, CR/LF in
/// the value, or a reserved name.
const SQLITE_BAD_HEADER: &str = "key = '' OR key GLOB '*[^!-9;-~]*' OR type <> 'text' \
     OR instr(value, char(13)) > 0 OR instr(value, char(10)) > 0 \
     OR lower(key) = 'nats-msg-id' OR lower(key) GLOB 'herald-*'";

/// The SQLite table with its defaults and checks (column types as migration 1
/// declared them, which is what sqlx decodes by).
fn sqlite_table(name: &str) -> String {
    let checks: String = sqlite_checks()
        .iter()
        .map(|(n, e)| format!(",\n  CONSTRAINT {n} CHECK ({e})"))
        .collect();
    format!(
        r#"CREATE TABLE {name} (
  "seq" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  "event_id" uuid_text NOT NULL UNIQUE DEFAULT (randomblob(16)),
  "subject" varchar NOT NULL,
  "aggregate_type" varchar NULL,
  "aggregate_id" varchar NULL,
  "ordering_key" varchar GENERATED ALWAYS AS (aggregate_type || '/' || aggregate_id) STORED,
  "payload" text NOT NULL,
  "headers" text NOT NULL DEFAULT '{{}}',
  "created_at" timestamp_with_timezone_text NOT NULL DEFAULT ({SQLITE_NOW}),
  "published_at" timestamp_with_timezone_text NULL,
  "stream_seq" integer NULL,
  "attempts" integer NOT NULL DEFAULT 0,
  "last_error" text NULL,
  "next_attempt_at" timestamp_with_timezone_text NULL,
  "lease_owner" varchar NULL,
  "lease_until" timestamp_with_timezone_text NULL,
  "parked_at" timestamp_with_timezone_text NULL{checks}
)"#
    )
}

/// Now as RFC 3339 UTC text with milliseconds: sorts against the timestamps
/// sqlx writes (`…T03:48:57.169129794+00:00`), as the relay compares them.
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')";

/// SQLite's CHECKs cannot look inside the headers object (no subqueries):
/// these triggers do, before the row is written. `event` is INSERT or
/// `UPDATE OF headers`.
fn sqlite_headers_trigger(name: &str, event: &str) -> String {
    format!(
        r#"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON herald_outbox
FOR EACH ROW WHEN CASE WHEN typeof(NEW.headers) = 'text' AND json_valid(NEW.headers)
  THEN json_type(NEW.headers) = 'object' ELSE 0 END
BEGIN
  SELECT RAISE(ABORT, 'herald_outbox_headers_valid: header names must be printable ASCII without spaces or '':''')
    FROM json_each(NEW.headers) WHERE key = '' OR key GLOB '*[^!-9;-~]*';
  SELECT RAISE(ABORT, 'herald_outbox_headers_valid: header values must be strings')
    FROM json_each(NEW.headers) WHERE type <> 'text';
  SELECT RAISE(ABORT, 'herald_outbox_headers_valid: header values must not contain CR or LF')
    FROM json_each(NEW.headers) WHERE instr(value, char(13)) > 0 OR instr(value, char(10)) > 0;
  SELECT RAISE(ABORT, 'herald_outbox_headers_valid: Nats-Msg-Id and Herald-* headers are reserved for Herald')
    FROM json_each(NEW.headers) WHERE lower(key) = 'nats-msg-id' OR lower(key) GLOB 'herald-*';
END"#
    )
}

/// The columns copied from the old table (all but the generated ordering_key).
const SQLITE_COLUMNS: &str = "seq, event_id, subject, aggregate_type, aggregate_id, payload, headers, \
     created_at, published_at, stream_seq, attempts, last_error, next_attempt_at, lease_owner, \
     lease_until, parked_at";

async fn sqlite_up(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let current = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'herald_outbox'",
        ))
        .await?;
    let sql: String = match current {
        Some(row) => row.try_get("", "sql")?,
        None => return Err(DbErr::Migration("herald_outbox does not exist".into())),
    };
    // Idempotent: a process that lost a migration race finds the table rebuilt.
    if !sql.contains("herald_outbox_subject_under_events") {
        db.execute_unprepared("DROP TABLE IF EXISTS herald_outbox_new")
            .await?;
        db.execute_unprepared(&sqlite_table("herald_outbox_new"))
            .await?;
        // Rows already in the table are copied whatever the new checks say
        // (as NOT VALID does on PostgreSQL): no legacy row blocks the upgrade.
        db.execute_unprepared("PRAGMA ignore_check_constraints = ON")
            .await?;
        let copied = db
            .execute_unprepared(&format!(
                "INSERT INTO herald_outbox_new ({SQLITE_COLUMNS}) SELECT {SQLITE_COLUMNS} FROM herald_outbox ORDER BY seq"
            ))
            .await;
        // Always restored: the connection goes back to a pool.
        db.execute_unprepared("PRAGMA ignore_check_constraints = OFF")
            .await?;
        copied?;
        // Unpublished legacy rows the rules refuse are parked, saying which
        // rule, as on PostgreSQL: the relay could not publish them.
        let mut rule: String = sqlite_checks()
            .iter()
            .map(|(name, expr)| format!(" WHEN ({expr}) IS FALSE THEN '{name}'"))
            .collect();
        rule.push_str(&format!(
            " WHEN EXISTS (SELECT 1 FROM json_each(headers) WHERE {SQLITE_BAD_HEADER}) \
              THEN 'herald_outbox_headers_valid'"
        ));
        db.execute_unprepared(&format!(
            "UPDATE herald_outbox_new SET parked_at = {SQLITE_NOW}, lease_owner = NULL, lease_until = NULL, \
               last_error = 'refused by the producer contract (herald migrate): ' || (CASE{rule} END) \
             WHERE published_at IS NULL AND parked_at IS NULL AND (CASE{rule} END) IS NOT NULL"
        ))
        .await?;
        for sql in [
            // Keep the AUTOINCREMENT high-water mark (rows may have been
            // pruned): seq values are never reused. Renaming the table
            // renames its sqlite_sequence row too.
            "DELETE FROM sqlite_sequence WHERE name = 'herald_outbox_new'",
            "UPDATE sqlite_sequence SET name = 'herald_outbox_new' WHERE name = 'herald_outbox'",
            "DROP TABLE herald_outbox",
            "ALTER TABLE herald_outbox_new RENAME TO herald_outbox",
        ] {
            db.execute_unprepared(sql).await?;
        }
    }
    for sql in INDEXES {
        db.execute_unprepared(sql).await?;
    }
    db.execute_unprepared(&sqlite_headers_trigger(
        "herald_outbox_headers_insert",
        "INSERT",
    ))
    .await?;
    db.execute_unprepared(&sqlite_headers_trigger(
        "herald_outbox_headers_update",
        "UPDATE OF headers",
    ))
    .await?;
    Ok(())
}
