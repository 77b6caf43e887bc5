/**
 * The agent gate process: `node dist/gate/main.js`, configured by the environment (gate/config.ts).
 * SIGTERM/SIGINT stop it cleanly: open agent calls are answered UNAVAILABLE (SDK workers retry),
 * then the listeners close.
 */
import { connect } from '../db';
import { createLog, errorText, logLevelOf } from '../runtime/log';
import { createRegistry, serveMetrics } from '../runtime/metrics';
import { parseEnv } from '../runtime/temporal';
import { GateEnv } from './config';
import { startGate } from './proxy';

const log = createLog('gate', logLevelOf());

async function main(): Promise<void> {
  const env = parseEnv(GateEnv);
  // Read-only use: agent lookups by token hash; a small pool is plenty (lookups are cached ≤ 1 s).
  const db = connect(env.DATABASE_URL, { max: 4 });
  const metrics = env.PATCHNANNY_METRICS_LISTEN ? createRegistry() : undefined;
  const gate = await startGate(env, db, (line, level = 'info') => log[level](line), metrics);
  const metricsServer = env.PATCHNANNY_METRICS_LISTEN
    ? await serveMetrics(env.PATCHNANNY_METRICS_LISTEN, metrics!, log)
    : undefined;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping`);
    void gate
      .stop()
      .then(() => metricsServer?.close())
      .then(() => db.destroy())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  log.fatal(errorText(err));
  process.exit(1);
});
