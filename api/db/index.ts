import path from 'node:path';
import knexFactory, { type Knex } from 'knex';

export type Db = Knex;

export function connect(databaseUrl: string, pool: { min?: number; max?: number } = {}): Db {
  return knexFactory({
    client: 'pg',
    connection: databaseUrl,
    pool: { min: pool.min ?? 0, max: pool.max ?? 10 },
  });
}

/** Apply the compiled migrations (dist/api/db/migrations/*.js). */
export async function migrate(db: Db): Promise<void> {
  await db.migrate.latest({
    directory: path.join(__dirname, 'migrations'),
    loadExtensions: ['.js'],
  });
}
