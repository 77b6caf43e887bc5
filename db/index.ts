/**
 * The database layer: connection, migrations and, one module per table family (`agents`,
 * `scripts`, `exceptions`, `windows`, `runs`), typed rows and the queries the API and the control
 * activities share. Nothing here knows about HTTP or Temporal.
 */
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';

/** A connection pool or a transaction: every query function takes either. */
export type Db = Knex;

export function connect(databaseUrl: string, pool: { min?: number; max?: number } = {}): Db {
  return knexFactory({
    client: 'pg',
    connection: databaseUrl,
    pool: { min: pool.min ?? 0, max: pool.max ?? 10 },
  });
}

/**
 * Apply the compiled migrations (dist/db/migrations/*.js). knex_migrations records file names
 * only, so databases migrated when these lived under api/db/ stay current.
 */
export async function migrate(db: Db): Promise<void> {
  await db.migrate.latest({
    directory: path.join(__dirname, 'migrations'),
    loadExtensions: ['.js'],
  });
}

/**
 * A value for a jsonb column. node-postgres would send a JS array as a PostgreSQL array, so
 * values go as JSON text; typed as the column's parsed type so row interfaces stay honest.
 */
export function jsonb<T>(db: Db, value: T): Knex.Raw<T> {
  // A `\u0000` escape (not an escaped backslash before "u0000") is the one JSON jsonb refuses.
  const json = JSON.stringify(value).replace(/(?<!\\)((?:\\\\)*)\\u0000/g, '$1\\ufffd');
  return db.raw<T>('?::jsonb', [json]);
}

/**
 * Text PostgreSQL will store: NUL, which it refuses in text, becomes U+FFFD. The API refuses
 * control characters at its boundary; this is for what it does not see there (script output,
 * package names and failure reasons from agents, signal payloads), so a control write, retried
 * without limit, can never fail for ever on one byte.
 */
export function pgText<T extends string | null>(text: T): T {
  return (text === null ? null : text.replaceAll('\0', '\uFFFD')) as T;
}

/** A row to write with every string value made storable by `pgText` (other values pass as they are). */
export function pgRow<T extends object>(row: T): T {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'string' ? pgText(v) : v])) as T;
}
