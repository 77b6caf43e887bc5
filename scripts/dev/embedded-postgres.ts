/**
 * The embedded database `npm start` uses when no DATABASE_URL is given: PGlite, served over the
 * PostgreSQL protocol on a Unix socket inside the 0700 data folder, and nowhere else.
 *
 * PGlite's socket server has no authentication at all (any startup message is accepted as the
 * superuser), so the file system is the only lock: a TCP port on 127.0.0.1 let any local user
 * rewrite `scripts` (content + sha256) and so run code as root on every agent. Only the data
 * folder's owner can reach a socket in it (other users cannot even traverse the folder).
 */
import { chmodSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

/** pg connects to `<host>/.s.PGSQL.<port>` when host is a folder; the port only names the file. */
const SOCKET_PORT = 5432;
/** sun_path is 108 bytes on Linux, with its terminating NUL. */
const MAX_SOCKET_PATH = 107;

export interface EmbeddedPostgres {
  /** A pg/knex connection string for the socket (`postgres://postgres@localhost/postgres?host=<dir>`). */
  url: string;
  /** The folder holding the socket (`psql -h <socketDir> -U postgres` as the data folder's owner). */
  socketDir: string;
  stop(): Promise<void>;
}

/** Open (or create) PGlite in `<dataDir>/pglite` and serve it on `<dataDir>/run/.s.PGSQL.5432`. */
export async function embeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700); // also a folder made before this rule (or by a looser umask)
  const socketDir = path.join(dataDir, 'run');
  mkdirSync(socketDir, { recursive: true, mode: 0o700 });
  chmodSync(socketDir, 0o700);
  const socketPath = path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}`);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new Error(
      `the database socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} bytes: choose a shorter PATCHNANNY_DATA_DIR`,
    );
  // A socket left by a killed start: nothing listens on it (PGlite below is one process's, and
  // would refuse a second opener anyway), and listen() would fail with EADDRINUSE.
  if (existsSync(socketPath)) rmSync(socketPath, { force: true });

  // ESM-first packages, loaded lazily so a PostgreSQL deployment never loads WASM.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(path.join(dataDir, 'pglite'));
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 32 });
  await server.start();
  chmodSync(socketPath, 0o600);
  return {
    url: `postgres://postgres@localhost/postgres?host=${encodeURIComponent(socketDir)}&port=${SOCKET_PORT}`,
    socketDir,
    stop: async () => {
      await server.stop();
      await db.close();
      rmSync(socketPath, { force: true });
    },
  };
}
