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
  return db.raw<T>('?::jsonb', [JSON.stringify(value)]);
}
