import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack, TRIGGER_ONLY_WINDOW } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/**
 * The configured run timeouts (PATCHNANNY_*_TIMEOUT_MS) reach every run, whoever starts it: read
 * back from the run's own Temporal history, where the script activity's timeout is what bounds
 * a script on the host.
 */
describe('configured run timeouts', { concurrency: true }, () => {
  const SCRIPT_MS = 97_000;
  const stack = new Stack({ approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: SCRIPT_MS });
  before(() => stack.start());
  after(() => stack.stop());

  /** startToClose and heartbeat timeouts (ms) of the run's script executions, from its history. */
  const scriptTimeouts = async (runId: string) => {
    const history = await stack.temporal.workflow.getHandle(runId).fetchHistory();
    const ms = (d: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
      Number(d?.seconds ?? 0) * 1000 + Math.round((d?.nanos ?? 0) / 1e6);
    return (history.events ?? [])
      .map((e) => e.activityTaskScheduledEventAttributes)
      .filter((a) => a?.activityType?.name === 'scriptExecute')
      .map((a) => ({ startToClose: ms(a!.startToCloseTimeout), heartbeat: ms(a!.heartbeatTimeout) }));
  };

  it('a run started through the API gets the configured script timeout, and a per-run override wins', async () => {
    const agent = await stack.startAgent('timeout-api', PLAN);
    const configured = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    const overridden = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'dry-run', timeouts: { scriptMs: 41_000 } },
    });
    assert.equal((await stack.waitForOutcome(configured.body.run.id)).outcome, 'completed');
    assert.equal((await stack.waitForOutcome(overridden.body.run.id)).outcome, 'completed');
    // heartbeat timeout = 3 × the heartbeat interval, which follows the script timeout (scriptMs / 20)
    assert.deepEqual(await scriptTimeouts(configured.body.run.id), [
      { startToClose: SCRIPT_MS, heartbeat: 3 * (SCRIPT_MS / 20) },
    ]);
    assert.deepEqual(await scriptTimeouts(overridden.body.run.id), [
      { startToClose: 41_000, heartbeat: 3 * (41_000 / 20) },
    ]);
  });

  it('a run started by a maintenance window gets the configured script timeout too', async () => {
    const agent = await stack.startAgent('timeout-window', PLAN);
    const w = await stack.createWindow({
      ...TRIGGER_ONLY_WINDOW,
      targets: { agentIds: [agent.id] },
      approval: 'dry-run-only',
    });
    const row = await stack.triggerFirstRun(w.id);
    assert.equal((await stack.waitForOutcome(row.id)).outcome, 'completed');
    assert.deepEqual(await scriptTimeouts(row.id), [{ startToClose: SCRIPT_MS, heartbeat: 3 * (SCRIPT_MS / 20) }]);
  });
});
