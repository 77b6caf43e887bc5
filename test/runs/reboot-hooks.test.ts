import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveRunTimeouts, type PatchRunInput } from '../../contract';
import { newRunId } from '../../contract/run-id';
import { insertRunRows } from '../../db/runs';
import { signScript } from '../../runtime/script-signing';
import { patchRun } from '../../workflows/patch-run';
import { ADMIN_TOKEN, DIST, replayHistory, Stack, TRIGGER_ONLY_WINDOW, type TestAgent } from '../support/stack';

const PLAN = ['linux-image-amd64 amd64 6.1.1 6.1.2 bookworm-security'];

/**
 * Issue 12 (docs/reboot-and-hooks.md): reboot policy and pre/post hooks inside a host's run, with
 * real agents whose boot-id file and shutdown binary are fixtures the test controls.
 */
describe('reboots and hooks', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  interface Host {
    agent: TestAgent;
    bootIdFile: string;
    shutdownLog: string;
  }

  /** An agent whose reboot is a fixture: shutdown appends its argv to a log, the boot id is a file. */
  async function host(name: string, opts: { rebootRequired?: boolean } = {}): Promise<Host> {
    const dir = stack.tmpDir();
    const bootIdFile = path.join(dir, 'boot_id');
    const shutdownLog = path.join(dir, 'shutdown.log');
    writeFileSync(bootIdFile, 'boot-1\n');
    const shutdown = path.join(dir, 'shutdown');
    writeFileSync(shutdown, `#!/bin/bash\necho "$*" >> ${shutdownLog}\n`);
    chmodSync(shutdown, 0o755);
    const agent = await stack.startAgent(name, PLAN, undefined, {
      PATCHNANNY_BOOT_ID_FILE: bootIdFile,
      PATCHNANNY_SHUTDOWN_BIN: shutdown,
    });
    if (opts.rebootRequired) writeFileSync(path.join(agent.fixtureDir, 'reboot-required'), 'linux-image-amd64');
    return { agent, bootIdFile, shutdownLog };
  }

  /** Upload a hook, signed with the stack's release key as agents require. */
  async function putHook(name: string, content: string, signed = true) {
    const signatures = signed ? [signScript(Buffer.from(content), stack.scriptKey.privatePem)] : [];
    const r = await stack.http('PUT', `/v1/hooks/${name}`, { body: { content, signatures } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.hook;
  }
  /** A hook that records its argv in the agent's fixture folder, then exits `code`. */
  const hookScript = (code: number) => `#!/bin/bash\necho "$0 $*" >> "$PN_FIXTURE_DIR/hooks.log"\nexit ${code}\n`;

  async function startRun(agentId: string, body: Record<string, unknown>) {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'auto', ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  }
  const events = (id: string) => stack.database.db('run_events').where({ run_id: id }).orderBy('id');
  const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : []);
  const applied = (agent: TestAgent) => existsSync(path.join(agent.fixtureDir, 'applied'));

  it('if-needed reboots once when the script says so, and completes when the boot id changes', async () => {
    const h = await host('reboot-ok', { rebootRequired: true });
    const id = await startRun(h.agent.id, { reboot: 'if-needed', timeouts: { rebootMs: 60_000 } });
    await stack.waitFor('the shutdown call', () => Promise.resolve(lines(h.shutdownLog).length > 0), 60_000);
    writeFileSync(h.bootIdFile, 'boot-2\n'); // the host came back
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.reboot, 'if-needed');
    const shutdownCalls = lines(h.shutdownLog);
    assert.equal(shutdownCalls.length, 1, 'the reboot activity ran exactly once');
    assert.match(shutdownCalls[0], new RegExp(`^-r \\+1 patchnanny run ${id.replace(/\./g, '\\.')}`));
    const rebooted = (await events(id)).find((e) => e.kind === 'rebooted');
    assert.deepEqual(rebooted?.detail, { bootIdBefore: 'boot-1', bootIdAfter: 'boot-2' });
    const status = await stack.temporal.workflow.getHandle(id).result();
    assert.equal(status.rebooted, true);
    await replayHistory(stack.temporal, id);
  });

  it('a host that does not come back with a new boot id ends reboot-timeout', async () => {
    const h = await host('reboot-stuck', { rebootRequired: true });
    const id = await startRun(h.agent.id, { reboot: 'if-needed', timeouts: { rebootMs: 3000 } });
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'reboot-timeout', run.failureReason);
    assert.equal(lines(h.shutdownLog).length, 1);
    assert.ok(applied(h.agent), 'the apply ran before the reboot');
  });

  it('never reboots under `never`, and reports reboot-required', async () => {
    const h = await host('reboot-never', { rebootRequired: true });
    const id = await startRun(h.agent.id, {});
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.rebootRequired, true);
    assert.equal(run.reboot, 'never');
    assert.deepEqual(lines(h.shutdownLog), [], 'no reboot was called');
  });

  it('a failing must-succeed pre-hook skips the apply', async () => {
    const h = await host('pre-fail');
    await putHook('pre-fail.sh', hookScript(3));
    const id = await startRun(h.agent.id, { hooks: { pre: { script: 'pre-fail.sh', timeoutSeconds: 30 } } });
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'skipped-pre-hook-failed', run.failureReason);
    assert.match(run.failureReason, /pre-hook pre-fail\.sh exited 3/);
    assert.equal(applied(h.agent), false, 'the apply never ran');
    assert.match(lines(path.join(h.agent.fixtureDir, 'hooks.log'))[0], new RegExp(` --pre --run-id ${id}$`));
    const pre = (await events(id)).find((e) => e.kind === 'pre-hook');
    assert.equal(pre?.detail.exitCode, 3);
  });

  it('a failing ignore-failure pre-hook is recorded and the apply runs', async () => {
    const h = await host('pre-ignore');
    await putHook('pre-ignore.sh', hookScript(1));
    const id = await startRun(h.agent.id, {
      hooks: { pre: { script: 'pre-ignore.sh', onFailure: 'ignore-failure' } },
    });
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.ok(applied(h.agent));
    const pre = (await events(id)).find((e) => e.kind === 'pre-hook');
    assert.equal(pre?.detail.failed, 'exited 1');
  });

  it('a failing post-hook after the apply ends post-hook-failed', async () => {
    const h = await host('post-fail');
    await putHook('post-ok.sh', hookScript(0));
    await putHook('post-fail.sh', hookScript(7));
    const id = await startRun(h.agent.id, {
      hooks: { pre: { script: 'post-ok.sh' }, post: { script: 'post-fail.sh' } },
    });
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'post-hook-failed', run.failureReason);
    assert.ok(applied(h.agent));
    const hookCalls = lines(path.join(h.agent.fixtureDir, 'hooks.log')).map((l) => l.split(' ').slice(1).join(' '));
    assert.deepEqual(hookCalls, [`--pre --run-id ${id}`, `--post --run-id ${id}`]);
  });

  it('a hook changed behind the pinned hash is refused and never executed', async () => {
    const h = await host('hook-tampered');
    const first = await putHook('tampered.sh', hookScript(0));
    const id = await startRun(h.agent.id, { approval: 'required', hooks: { pre: { script: 'tampered.sh' } } });
    const waiting = await stack.waitForRun(id, (r) => r.phase === 'awaiting-approval', 60_000);
    const pinned = (await events(id)).find((e) => e.kind === 'hooks-pinned');
    assert.equal(pinned?.detail.pre.sha256, first.sha256);
    // Replaced (and even properly signed) after the run pinned it: the run still refuses it.
    await putHook('tampered.sh', hookScript(0) + 'echo changed\n');
    assert.equal((await stack.approve(id, waiting.planHash)).status, 200);
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'skipped-pre-hook-failed', run.failureReason);
    assert.match(run.failureReason, /script-hash-mismatch/);
    assert.equal(existsSync(path.join(h.agent.fixtureDir, 'hooks.log')), false, 'the hook never ran');
    assert.equal(applied(h.agent), false);
  });

  it('an unknown hook is a 400 naming the field; a hook upload needs an admin', async () => {
    const h = await host('hook-unknown');
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: h.agent.id, mode: 'apply', hooks: { pre: { script: 'nope.sh' } } },
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.field, 'hooks.pre.script');
    const bad = await stack.http('POST', '/v1/runs', { body: { agentId: h.agent.id, mode: 'apply', reboot: 'maybe' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'reboot');
    const asAgent = await stack.http('PUT', '/v1/hooks/x.sh', { token: h.agent.token, body: { content: 'x' } });
    assert.equal(asAgent.status, 403);
  });

  it('a workflow started around the API cannot add a reboot or a hook to its run', async () => {
    const h = await host('claim-reboot', { rebootRequired: true });
    const runId = newRunId(h.agent.id, Date.now(), () => randomInt(32) / 32);
    await insertRunRows(stack.database.db, [
      { runId, agentId: h.agent.id, mode: 'apply', approval: 'auto', requestedBy: 'alice' },
    ]);
    const input: PatchRunInput = {
      runId,
      agentId: h.agent.id,
      hostname: 'forged',
      mode: 'apply',
      approval: 'auto',
      requestedBy: 'mallory',
      timeouts: { ...resolveRunTimeouts(stack.runDefaults), rebootMs: 2000 },
      reboot: 'always',
    };
    const handle = await stack.temporal.workflow.start(patchRun, {
      taskQueue: stack.controlQueue,
      workflowId: runId,
      args: [input],
    });
    const status = await handle.result();
    assert.equal(status.outcome, 'untrusted-input');
    assert.match(status.failureReason ?? '', /reboot \(row never, input always\)/);
    assert.deepEqual(lines(h.shutdownLog), []);
    assert.equal(applied(h.agent), false);
  });

  it('a window passes its reboot policy and hooks to its runs', async () => {
    const h = await host('window-hooks', { rebootRequired: true });
    await putHook('window-pre.sh', hookScript(5));
    const unknown = await stack.http('POST', '/v1/windows', {
      body: {
        name: 'w',
        timezone: 'UTC',
        approval: 'auto',
        ...TRIGGER_ONLY_WINDOW,
        targets: { agentIds: [h.agent.id] },
        hooks: { pre: { script: 'missing.sh' } },
      },
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.field, 'hooks.pre.script');
    const w = await stack.createWindow({
      ...TRIGGER_ONLY_WINDOW,
      targets: { agentIds: [h.agent.id] },
      reboot: 'always',
      hooks: { pre: { script: 'window-pre.sh', timeoutSeconds: 20 } },
    });
    assert.equal(w.reboot, 'always');
    assert.deepEqual(w.hooks, { pre: { script: 'window-pre.sh', timeoutSeconds: 20, onFailure: 'must-succeed' } });
    const row = await stack.triggerFirstRun(w.id);
    assert.equal(row.reboot_policy, 'always');
    const run = await stack.waitForOutcome(row.id, 60_000);
    assert.equal(run.outcome, 'skipped-pre-hook-failed', run.failureReason);
    assert.equal(applied(h.agent), false);
    assert.deepEqual(lines(h.shutdownLog), [], 'no apply, so no reboot');
    await replayHistory(stack.temporal, row.id);
  });

  it('an admin uploads a signed hook with the CLI and lists it', async () => {
    const dir = stack.tmpDir();
    const file = path.join(dir, 'cli-hook.sh');
    const content = hookScript(0);
    writeFileSync(file, content);
    writeFileSync(
      `${file}.sig`,
      JSON.stringify({ signatures: [signScript(Buffer.from(content), stack.scriptKey.privatePem)] }),
    );
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.join(DIST, 'cli/patchnanny.js'), ...args],
          { env: { PATH: process.env.PATH, PATCHNANNY_API_URL: stack.baseUrl, PATCHNANNY_TOKEN: ADMIN_TOKEN } },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
        );
      });
    const put = await cli(['hooks', 'put', 'cli-hook.sh', '--file', file, '--sig', `${file}.sig`, '--json']);
    assert.equal(put.code, 0, put.stderr);
    const hook = JSON.parse(put.stdout);
    assert.equal(hook.name, 'cli-hook.sh');
    const served = await stack.http('GET', '/v1/hooks/cli-hook.sh');
    assert.equal(served.body.hook.content, content);
    assert.equal(served.body.hook.sha256, hook.sha256);
    assert.equal(served.body.hook.signatures.length, 1);
    const list = await cli(['hooks', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(JSON.parse(list.stdout).some((h: { name: string }) => h.name === 'cli-hook.sh'));
    const audit = await stack.database.db('audit_log').where({ kind: 'hook.put', subject: 'cli-hook.sh' });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].actor, 'alice');
  });
});
