import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';
import { connect, type Db } from '../../db';

export interface ScratchDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

/**
 * A fresh, empty PostgreSQL database named `<prefix>_<random>` on `serverUrl`, dropped by
 * `drop()` (tests give each file one, the benchmark one per run).
 */
export async function createScratchDatabase(serverUrl: string, prefix: string, poolMax = 4): Promise<ScratchDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: serverUrl, pool: { min: 0, max: 1 } });
  await admin.raw(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const db = connect(url.toString(), { max: poolMax });
  return {
    url: url.toString(),
    db,
    drop: async () => {
      await db.destroy();
      await admin.raw(`drop database if exists ${name} with (force)`);
      await admin.destroy();
    },
  };
}
