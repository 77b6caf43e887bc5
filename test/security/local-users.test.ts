import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { embeddedPostgres, type EmbeddedPostgres } from '../../scripts/dev/embedded-postgres';
import { connect } from '../../db';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';

/**
 * patchnanny is root on every host: whoever can write the `scripts` table runs code as root
 * everywhere. The embedded database `npm start` serves must therefore be out of reach of every
 * other local user — shown here by trying as `nobody`, the way issue 13 found it open.
 */
describe('local users and the embedded database', () => {
  // A world-traversable parent, so only the data folder's own permissions keep `nobody` out.
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-local-users-'));
  chmodSync(tmp, 0o755);
  const dataDir = path.join(tmp, 'data');
  let pg: EmbeddedPostgres;
  /**
   * `pg` and what it needs, copied where `nobody` can read them: the checkout itself may sit in a
   * folder only root can enter (a `mktemp -d` clone is 0700), which must not decide the test.
   */
  const probeModules = path.join(tmp, 'node_modules');
  const copyWithDependencies = (name: string) => {
    const target = path.join(probeModules, name);
    const source = path.join(REPO_ROOT, 'node_modules', name);
    if (existsSync(target) || !existsSync(source)) return; // optional dependencies may be absent
    cpSync(source, target, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(source, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(manifest.dependencies ?? {})) copyWithDependencies(dep);
  };
  before(async () => {
    copyWithDependencies('pg');
    pg = await embeddedPostgres(dataDir);
  });
  after(async () => {
    await pg?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** Connect with pg as `user` (via runuser), run `select 1`; the outcome as the child saw it. */
  const connectAs = (user: string, url: string) =>
    new Promise<{ ok: boolean; out: string }>((resolve) => {
      const code = `
        const { Client } = require(${JSON.stringify(path.join(probeModules, 'pg'))});
        const c = new Client({ connectionString: process.argv[1], connectionTimeoutMillis: 5000 });
        c.connect()
          .then(() => c.query('select 1 as one'))
          .then((r) => { console.log('connected', r.rows[0].one); return c.end(); })
          .catch((e) => { console.log('refused', e.code ?? '', e.message); process.exit(1); });`;
      const argv =
        user === 'root' ? [process.execPath, '-e', code, url] : ['-u', user, '--', process.execPath, '-e', code, url];
      execFile(
        user === 'root' ? argv[0] : 'runuser',
        user === 'root' ? argv.slice(1) : argv,
        { cwd: tmp },
        (err, stdout, stderr) => resolve({ ok: !err, out: stdout + stderr }),
      );
    });

  it('the data folder and the socket folder are 0700, the socket 0600', () => {
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(statSync(pg.socketDir).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(pg.socketDir, '.s.PGSQL.5432')).mode & 0o777, 0o600);
  });

  it('serves no TCP port: the connection string names the socket folder', () => {
    const url = new URL(pg.url);
    assert.equal(url.searchParams.get('host'), pg.socketDir);
  });

  it('nobody cannot connect; root (the data folder owner) can, through pg and knex', async () => {
    // The same child as nobody against a database nobody may use (trust auth on 127.0.0.1):
    // proves node and pg work for nobody, so the refusal below is the socket's permissions.
    const control = await connectAs('nobody', 'postgres://postgres@127.0.0.1:5432/postgres');
    assert.ok(control.ok, `nobody can run the probe at all: ${control.out}`);

    const asNobody = await connectAs('nobody', pg.url);
    assert.equal(asNobody.ok, false, `nobody connected to the embedded database: ${asNobody.out}`);
    assert.match(asNobody.out, /refused EACCES/, asNobody.out);

    const asRoot = await connectAs('root', pg.url);
    assert.ok(asRoot.ok, asRoot.out);
    assert.match(asRoot.out, /connected 1/);

    const db = connect(pg.url);
    try {
      assert.deepEqual((await db.raw('select 2 as two')).rows, [{ two: 2 }]);
    } finally {
      await db.destroy();
    }
  });
});
