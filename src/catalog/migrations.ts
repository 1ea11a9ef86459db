/**
 * Versioned catalog migrations, applied in order at start by every process that opens the
 * catalog (`kiln serve`, `kiln worker`). Each runs once, inside one transaction, under an
 * advisory lock so two processes starting together on one PostgreSQL do not race. A migration,
 * once released, is never edited: add the next one.
 *
 * Records are stored as the JSON documents the API returns (`doc`), so a GET is one indexed
 * lookup and no re-serialization; the columns beside `doc` are what queries filter and order on.
 * Soft-deleted records stay in their table with `deleted` set (IMS keeps them in a separate
 * collection; one table keeps the id unique across both).
 */
import type { Sql } from "./sql.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

function recordTable(name: string): string {
  return `
    CREATE TABLE ${name} (
      id uuid PRIMARY KEY,
      seq bigserial NOT NULL,
      doc jsonb NOT NULL,
      deleted timestamptz
    );
    CREATE INDEX ${name}_live ON ${name} (seq) WHERE deleted IS NULL;
    CREATE INDEX ${name}_deleted ON ${name} (seq) WHERE deleted IS NOT NULL;
    CREATE INDEX ${name}_link ON ${name} ((doc->'link'->>'path'));`;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "records, jobs, job logs, workers",
    sql: `
      ${recordTable("recipes")}
      ${recordTable("images")}
      ${recordTable("public_keys")}
      CREATE TABLE jobs (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL,
        doc jsonb NOT NULL,
        status text GENERATED ALWAYS AS (doc->>'status') STORED,
        job_type text GENERATED ALWAYS AS (doc->>'job_type') STORED,
        created timestamptz NOT NULL DEFAULT now(),
        worker text,
        queue_id text
      );
      CREATE INDEX jobs_seq ON jobs (seq);
      CREATE INDEX jobs_worker ON jobs (worker) WHERE worker IS NOT NULL;
      CREATE TABLE job_logs (
        job_id uuid NOT NULL,
        seq bigserial NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        text text NOT NULL,
        PRIMARY KEY (job_id, seq)
      );
      CREATE TABLE workers (
        name text PRIMARY KEY,
        host text NOT NULL,
        pid integer NOT NULL,
        version text NOT NULL,
        concurrency integer NOT NULL,
        running integer NOT NULL DEFAULT 0,
        started timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now(),
        stopped timestamptz
      );`,
  },
  {
    version: 2,
    name: "remote build nodes; jobs waiting for a worker",
    // Remote build nodes: IMS keys them by xname and lists them in insertion order; no soft
    // delete. jobs_waiting: the reaper looks for unclaimed jobs in `creating` at every sweep.
    sql: `
      CREATE TABLE remote_build_nodes (
        xname text PRIMARY KEY,
        seq bigserial NOT NULL,
        doc jsonb NOT NULL,
        created timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX remote_build_nodes_seq ON remote_build_nodes (seq);
      CREATE INDEX jobs_waiting ON jobs (seq) WHERE status = 'creating' AND worker IS NULL;`,
  },
  {
    version: 3,
    name: "record change notifications",
    // Every change of a record table, by any process, NOTIFYs channel kiln_catalog with
    // "<table> <id>" per row ("<table>" for TRUNCATE), delivered at commit. An API process on
    // PostgreSQL keeps served JSON in memory only while it hears these (catalog.ts).
    sql: `
      CREATE FUNCTION kiln_record_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_LEVEL = 'STATEMENT' THEN PERFORM pg_notify('kiln_catalog', TG_TABLE_NAME); ELSIF TG_OP = 'DELETE' THEN PERFORM pg_notify('kiln_catalog', TG_TABLE_NAME || ' ' || OLD.id); ELSE PERFORM pg_notify('kiln_catalog', TG_TABLE_NAME || ' ' || NEW.id); END IF; RETURN NULL; END $$;
      ${["recipes", "images", "public_keys", "jobs"]
        .map(
          (t) => `
      CREATE TRIGGER ${t}_changed AFTER INSERT OR UPDATE OR DELETE ON ${t} FOR EACH ROW EXECUTE FUNCTION kiln_record_changed();
      CREATE TRIGGER ${t}_truncated AFTER TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION kiln_record_changed();`,
        )
        .join("")}`,
  },
  {
    version: 4,
    name: "workers by process instance",
    // A worker restarted under the same --worker-name is a new row: rows are keyed by a random
    // id per process (instance), and a job's claim names the instance, so the heartbeat of the
    // new process never keeps the dead one's jobs alive (worker.ts). Rows and claims from
    // before get an instance id made from the name, so a worker running across the upgrade is
    // still matched to its jobs.
    sql: `
      ALTER TABLE workers ADD COLUMN instance text;
      UPDATE workers SET instance = 'legacy-' || name;
      ALTER TABLE workers ALTER COLUMN instance SET NOT NULL;
      ALTER TABLE workers DROP CONSTRAINT workers_pkey;
      ALTER TABLE workers ADD PRIMARY KEY (instance);
      CREATE INDEX workers_name ON workers (name);
      ALTER TABLE jobs ADD COLUMN worker_instance text;
      UPDATE jobs SET worker_instance = 'legacy-' || worker WHERE worker IS NOT NULL;`,
  },
  {
    version: 5,
    name: "workers declare the arches they build",
    // Workers from before built only their machine's arch, x86_64 everywhere Kiln ran.
    sql: `ALTER TABLE workers ADD COLUMN arches text NOT NULL DEFAULT 'x86_64';`,
  },
];

/** Applies the migrations this catalog lacks; returns the versions applied now. */
export async function migrate(sql: Sql, migrations: Migration[] = MIGRATIONS): Promise<number[]> {
  await sql.exec(`CREATE TABLE IF NOT EXISTS kiln_migrations (version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`);
  const applied: number[] = [];
  for (const m of migrations) {
    const done = await sql.transaction(async (tx) => {
      // 0x6b696c6e = "kiln": one lock for every migrating process.
      await tx.query("SELECT pg_advisory_xact_lock(1802071150)");
      const have = await tx.query<{ version: number }>("SELECT version FROM kiln_migrations WHERE version = $1", [m.version]);
      if (have.length > 0) return false;
      for (const statement of splitStatements(m.sql)) await tx.query(statement);
      await tx.query("INSERT INTO kiln_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}

/** Splits a migration script at `;` ending a line (migrations hold no functions or quoted semicolons). */
function splitStatements(script: string): string[] {
  return script
    .split(/;\s*\n/)
    .map((s) => s.trim().replace(/;$/, ""))
    .filter((s) => s.length > 0);
}
