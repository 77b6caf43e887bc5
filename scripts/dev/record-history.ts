/**
 * Records a real patch-run history with an OLD build of patchnanny, for a replay test of a
 * `patched()` marker (docs/testing.md "Histories from before a patch marker"). Usage:
 *
 *   git archive <commit> | tar -x -C /tmp/old-pn   # the code before the marker, outside the clone
 *   (cd /tmp/old-pn && ln -s <clone>/node_modules node_modules && npm run build)
 *   node dist/scripts/dev/record-history.js /tmp/old-pn test/fixtures/histories/<name>.json
 *
 * It starts a Temporal dev server, the old build's own test stack (API, control worker, one real
 * agent with the fixture script), runs one apply with `approval: required`, approves it with a
 * signed approval as the tests do, and writes the closed run's history as Temporal's JSON.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { z } from 'zod';
import { startDevServer } from './temporal-server';

/** The fixture's form: 64-bit ids and times as strings, enums by name, bytes base64; History.fromObject reads it. */
const HISTORY_JSON = { longs: String, enums: String, bytes: String } as const;

/** The old API's answers, as far as this script reads them. */
const Started = z.object({ run: z.object({ id: z.string() }) });
const RunView = z.object({
  phase: z.string(),
  outcome: z.string().nullable(),
  planHash: z.string().nullable(),
  failureReason: z.string().nullable(),
});

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

async function main(): Promise<void> {
  const [oldBuild, out] = process.argv.slice(2);
  if (!oldBuild || !out) throw new Error('usage: record-history.js <old checkout, built> <out.json>');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-record-'));
  const server = await startDevServer({
    dbFile: path.join(tmp, 'temporal.db'),
    logFile: path.join(tmp, 'temporal.log'),
    uiPort: null,
  });
  process.env.TEMPORAL_ADDRESS = server.address;
  // The old build's stack, agent and workflow bundle: the history is what that code wrote.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Stack } = require(
    path.resolve(oldBuild, 'dist/test/support/stack.js'),
  ) as typeof import('../../test/support/stack');
  const stack = new Stack();
  try {
    await stack.start();
    const agent = await stack.startAgent('replay-01', PLAN);
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    if (r.status !== 202) throw new Error(`run not started: ${r.status} ${JSON.stringify(r.body)}`);
    const runId = Started.parse(r.body).run.id;
    const waiting = RunView.parse(
      await stack.waitForRun(
        runId,
        (x) => RunView.parse(x).phase === 'awaiting-approval' || RunView.parse(x).outcome !== null,
        60_000,
      ),
    );
    if (waiting.phase !== 'awaiting-approval' || !waiting.planHash)
      throw new Error(`run ${runId} did not wait: ${JSON.stringify(waiting)}`);
    const approved = await stack.approve(runId, waiting.planHash);
    if (approved.status !== 200) throw new Error(`approval refused: ${JSON.stringify(approved.body)}`);
    const done = RunView.parse(await stack.waitForOutcome(runId, 60_000));
    if (done.outcome !== 'completed') throw new Error(`run ${runId} ended ${done.outcome}: ${done.failureReason}`);
    const history = await stack.temporal.workflow.getHandle(runId).fetchHistory();
    // protobufjs' object form, not historyToJSON: with @temporalio/common's own protobufjs 8 next
    // to @temporalio/proto's 7, historyToJSON and historyFromJSON throw "type must be a Type".
    const json = temporal.api.history.v1.History.toObject(history as temporal.api.history.v1.History, HISTORY_JSON);
    writeFileSync(out, `${JSON.stringify(json, null, 1)}\n`);
    console.log(`${out}: ${history.events?.length} events of ${runId}`);
  } finally {
    await stack.stop();
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
