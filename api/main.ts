/**
 * Control-plane entry: migrates the database, loads the patch scripts, serves the HTTP API and
 * runs the control worker in one process (`PATCHNANNY_ROLE=api|worker` runs only one of them).
 */
import type { Server } from 'node:http';
import type { Client } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { connectClient, parseEnv } from '../runtime/temporal';
import { createApp } from './app';
import { createControlWorker } from '../control-worker';
import { connect, migrate } from '../db';
import { ApiEnv, parseAdminTokens, runDefaultsOf } from './env';
import { scriptsService } from './scripts/service';

async function main(): Promise<void> {
  const env = parseEnv(ApiEnv);
  // The SDK logs every worker state change at INFO; PATCHNANNY_LOG_LEVEL=INFO brings that back.
  Runtime.install({ logger: new DefaultLogger(env.PATCHNANNY_LOG_LEVEL) });
  const role = env.PATCHNANNY_ROLE;
  const db = connect(env.DATABASE_URL);
  await migrate(db);
  const scripts = await scriptsService({ db }).load(env.PATCHNANNY_SCRIPTS_DIR);
  const described = scripts.map(
    (s) =>
      `${s.name} ${s.sha256.slice(0, 12)} ` +
      (s.signedBy.length ? `signed by ${s.signedBy.join('+')}` : 'UNSIGNED (agents refuse it: docs/script-signing.md)'),
  );
  console.log(`[api] scripts: ${described.join(', ') || 'none'}`);

  let server: Server | undefined;
  let temporal: Client | undefined;
  if (role === 'all' || role === 'api') {
    temporal = await connectClient(env);
    const app = createApp({
      db,
      temporal,
      admins: parseAdminTokens(env.PATCHNANNY_ADMIN_TOKENS),
      controlQueue: env.PATCHNANNY_CONTROL_QUEUE,
      runDefaults: runDefaultsOf(env),
    });
    server = app.listen(env.PORT, env.HOST);
    await new Promise<void>((resolve) => server!.once('listening', resolve));
    const addr = server.address();
    console.log(`[api] listening on http://${env.HOST}:${typeof addr === 'object' && addr ? addr.port : env.PORT}`);
  }
  if (role === 'all' || role === 'worker') {
    temporal ??= await connectClient(env);
    const worker = await createControlWorker(env, db, env.PATCHNANNY_CONTROL_QUEUE, runDefaultsOf(env), temporal);
    console.log(`[control-worker] polling ${env.PATCHNANNY_CONTROL_QUEUE}`);
    await worker.run(); // returns after SIGINT/SIGTERM (the SDK's default shutdown signals)
    server?.close();
    await db.destroy();
  } else {
    const stop = () => server?.close(() => void db.destroy());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
