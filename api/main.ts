/**
 * Control-plane entry: migrates the database, loads the patch scripts, serves the HTTP API and
 * runs the control worker in one process (`PATCHNANNY_ROLE=api|worker` runs only one of them).
 */
import type { Server } from 'node:http';
import type { Client } from '@temporalio/client';
import { Registry } from 'prom-client';
import { createLog, errorText, logLevelOf } from '../runtime/log';
import { createRegistry, serveMetrics } from '../runtime/metrics';
import { installSdkRuntime } from '../runtime/sdk-runtime';
import { connectClient, parseEnv } from '../runtime/temporal';
import { createApp } from './app';
import { createControlWorker } from '../control-worker';
import { runObserver } from '../control-worker/metrics';
import { connect, migrate } from '../db';
import { ApiEnv, parseAdminTokens, runDefaultsOf } from './env';
import { fleetGauges } from './metrics';
import { scriptsService } from './scripts/service';

const log = createLog('api', logLevelOf());

async function main(): Promise<void> {
  const env = parseEnv(ApiEnv);
  const metrics = env.PATCHNANNY_METRICS_LISTEN ? createRegistry() : undefined;
  const sdk = await installSdkRuntime(log, env.PATCHNANNY_LOG_LEVEL, metrics !== undefined);
  const role = env.PATCHNANNY_ROLE;
  const db = connect(env.DATABASE_URL);
  await migrate(db);
  if (metrics && role !== 'worker') fleetGauges(metrics, db, log);
  const metricsServer =
    metrics && env.PATCHNANNY_METRICS_LISTEN
      ? await serveMetrics(env.PATCHNANNY_METRICS_LISTEN, metrics, log, sdk.metricsText)
      : undefined;
  const scripts = await scriptsService({ db }).load(env.PATCHNANNY_SCRIPTS_DIR);
  const described = scripts.map(
    (s) =>
      `${s.name} ${s.sha256.slice(0, 12)} ` +
      (s.signedBy.length ? `signed by ${s.signedBy.join('+')}` : 'UNSIGNED (agents refuse it: docs/script-signing.md)'),
  );
  log.info(`scripts: ${described.join(', ') || 'none'}`);

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
      desk: { temporalUiUrl: env.PATCHNANNY_TEMPORAL_UI_URL, namespace: env.TEMPORAL_NAMESPACE },
      log,
      metrics,
    });
    server = app.listen(env.PORT, env.HOST);
    await new Promise<void>((resolve) => server!.once('listening', resolve));
    const addr = server.address();
    log.info(`listening on http://${env.HOST}:${typeof addr === 'object' && addr ? addr.port : env.PORT}`);
  }
  if (role === 'all' || role === 'worker') {
    temporal ??= await connectClient(env);
    const observe = runObserver(metrics ?? new Registry(), log); // counted, served only with a listener
    const worker = await createControlWorker(
      env,
      db,
      env.PATCHNANNY_CONTROL_QUEUE,
      runDefaultsOf(env),
      temporal,
      observe,
      (message) => log.warn({ component: 'webhooks' }, message),
      env.PATCHNANNY_WEBHOOK_UPCOMING_HOURS * 3600,
    );
    log.info({ component: 'control-worker' }, `control worker polling ${env.PATCHNANNY_CONTROL_QUEUE}`);
    await worker.run(); // returns after SIGINT/SIGTERM (the SDK's default shutdown signals)
    server?.close();
    await metricsServer?.close();
    await db.destroy();
    process.exit(0); // the SDK Runtime's core-log forwarding would keep the event loop alive
  } else {
    const stop = () =>
      server?.close(
        () =>
          void Promise.resolve(metricsServer?.close())
            .then(() => db.destroy())
            .then(() => process.exit(0)),
      );
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
}

main().catch((err) => {
  log.fatal(errorText(err));
  process.exit(1);
});
