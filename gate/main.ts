/**
 * The agent gate process: `node dist/gate/main.js`, configured by the environment (gate/config.ts).
 * SIGTERM/SIGINT stop it cleanly: open agent calls are answered UNAVAILABLE (SDK workers retry),
 * then the listeners close.
 */
import { connect } from '../db';
import { parseEnv } from '../runtime/temporal';
import { GateEnv } from './config';
import { startGate } from './proxy';

async function main(): Promise<void> {
  const env = parseEnv(GateEnv);
  // Read-only use: agent lookups by token hash; a small pool is plenty (lookups are cached ≤ 1 s).
  const db = connect(env.DATABASE_URL, { max: 4 });
  const gate = await startGate(env, db);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`[gate] ${signal}: stopping`);
    void gate
      .stop()
      .then(() => db.destroy())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  console.error(`[gate] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
