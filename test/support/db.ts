import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';
import { connect, migrate, type Db } from '../../api/db';

/** Server the tests use: the machine's PostgreSQL (PATCHNANNY_TEST_PG overrides). */
const SERVER = process.env.PATCHNANNY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  db: Db;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `pn_test_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: SERVER, pool: { min: 0, max: 1 } });
  await admin.raw(`create database ${name}`);
  const url = new URL(SERVER);
  url.pathname = `/${name}`;
  const db = connect(url.toString(), { max: 8 });
  await migrate(db);
  return {
    db,
    url: url.toString(),
    drop: async () => {
      await db.destroy();
      await admin.raw(`drop database if exists ${name} with (force)`);
      await admin.destroy();
    },
  };
}
