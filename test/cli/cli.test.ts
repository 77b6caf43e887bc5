/**
 * The built CLI (dist/cli/patchnanny.js) as an admin runs it, against a real stack (PostgreSQL,
 * Temporal, control worker, a real agent process): tables and --json, plan, approve --yes with a
 * key made by keygen, run --follow, reject, exceptions and windows; and the exit codes of every
 * kind of refusal (unknown run, wrong role, a plan that drifted, an unreachable API, bad usage).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ADMIN_TOKEN, DIST, Stack, type TestAgent } from '../support/stack';

const CLI = path.join(DIST, 'cli/patchnanny.js');
const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security', 'curl amd64 7.88.1-10 7.88.1-11 bookworm'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

describe('patchnanny CLI (the built binary)', () => {
  const stack = new Stack();
  let agent: TestAgent;
  let keyFile = '';
  let viewerToken = '';

  /** Run the CLI with the stack's URL and the admin's token in its environment (as an admin's shell has). */
  const cli = (args: string[], env: Record<string, string> = {}): Promise<Result> =>
    new Promise((resolve) => {
      const child = execFile(
        process.execPath,
        [CLI, ...args],
        {
          env: {
            PATH: process.env.PATH,
            PATCHNANNY_API_URL: stack.baseUrl,
            PATCHNANNY_TOKEN: ADMIN_TOKEN,
            PATCHNANNY_POLL_MS: '300',
            ...env,
          },
          timeout: 120_000,
        },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
      );
      child.stdin?.end(); // no one at the keyboard
    });
  const json = async (args: string[], env?: Record<string, string>) => {
    const r = await cli([...args, '--json'], env);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown> & Record<string, unknown>[];
  };

  /** An apply run awaiting approval on the agent (started through the API, as a requester would). */
  const awaitingRun = async (): Promise<string> => {
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const run = await stack.waitForRun(r.body.run.id, (x) => x.phase === 'awaiting-approval' || x.outcome !== null);
    assert.equal(run.phase, 'awaiting-approval', run.failureReason);
    return run.id as string;
  };

  before(async () => {
    await stack.start();
    // alice (the stack's admin) approves with a key made by the CLI, registered before any run.
    keyFile = path.join(stack.tmpDir(), 'alice.key');
    const made = await cli(['keygen', '--out', keyFile, '--by', 'alice']);
    assert.equal(made.code, 0, made.stderr);
    const reg = await stack.http('POST', '/v1/keys', {
      body: { owner: 'alice', publicKey: JSON.parse(made.stdout).publicKey },
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.equal((await stack.http('POST', '/v1/users', { body: { name: 'vic', role: 'viewer' } })).status, 201);
    viewerToken = (await stack.http('POST', '/v1/users/vic/tokens', { body: {} })).body.token;
    agent = await stack.startAgent('cli-01', PLAN);
  });
  after(() => stack.stop());

  it('--help on every command, usage errors exit 2, an unreachable API exits 3', async () => {
    const overview = await cli(['--help']);
    assert.equal(overview.code, 0);
    const names = [...overview.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]);
    assert.ok(names.includes('approve') && names.includes('windows') && names.length >= 10, overview.stdout);
    for (const name of names) {
      const h = await cli([name, '--help']);
      assert.equal(h.code, 0, `${name} --help`);
      assert.match(h.stdout, new RegExp(`^patchnanny ${name}`), `${name} --help`);
    }
    assert.equal((await cli([])).code, 2);
    assert.equal((await cli(['no-such-command'])).code, 2);
    assert.equal((await cli(['runs', '--no-such-option'])).code, 2);
    const missing = await cli(['reject', 'patch-run.x.01JDZZZZZZZZZZZZZZZZZZZZZZ']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--reason is required/);
    const noToken = await cli(['agents'], { PATCHNANNY_TOKEN: '' });
    assert.equal(noToken.code, 2);
    const down = await cli(['agents', '--json'], { PATCHNANNY_API_URL: 'http://127.0.0.1:1' });
    assert.equal(down.code, 3, down.stderr);
    assert.match(JSON.parse(down.stdout).error.message, /cannot reach/);
  });

  it('agents: a table by default, JSON with --json', async () => {
    const table = await cli(['agents']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID +HOSTNAME +STATUS/);
    assert.match(table.stdout, new RegExp(`^${agent.id} +cli-01 +accepted +apt +Debian`, 'm'));
    const agents = await json(['agents']);
    assert.ok(agents.some((a) => a.id === agent.id && a.hostname === 'cli-01'));
  });

  it('plan <agent> dry-runs and shows the plan, with a progress line', async () => {
    const r = await cli(['plan', agent.id]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /planning|pending|queued/);
    assert.match(r.stderr, /done \(completed\)/);
    assert.match(r.stdout, /openssl 3\.0\.15-1 -> 3\.0\.16-1/);
    console.log(`$ patchnanny plan ${agent.id}\n${r.stderr}${r.stdout}`);
    const run = await json(['plan', agent.id]);
    assert.equal(run.outcome, 'completed');
    assert.deepEqual(
      (run.plan as { name: string }[]).map((p) => p.name),
      ['curl', 'openssl'],
    );
  });

  it('approve --yes signs and approves; run --follow waits for the outcome; runs lists it', async () => {
    const id = await awaitingRun();
    const approved = await json(['approve', id, '--key', keyFile, '--yes']);
    assert.equal(approved.runId, id);
    const done = await cli(['run', id, '--follow', '--json']);
    assert.equal(done.code, 0, done.stderr);
    assert.equal(JSON.parse(done.stdout).outcome, 'completed');
    assert.equal(JSON.parse(done.stdout).approvedBy, 'alice');
    const runs = await json(['runs', '--agent', agent.id, '--outcome', 'completed']);
    assert.ok(runs.some((r) => r.id === id));
    const table = await cli(['runs', '--agent', agent.id]);
    console.log(`$ patchnanny runs --agent ${agent.id}\n${table.stdout}`);
    assert.match(table.stdout, new RegExp(`^${id.replace(/\./g, '\\.')} +${agent.id} +apply +done +completed`, 'm'));
  });

  it('refusals exit 1: unknown run, wrong role, not awaiting approval, a drifted plan, answering no', async () => {
    const unknown = await cli(['approve', 'patch-run.nobody.01JDZZZZZZZZZZZZZZZZZZZZZZ', '--key', keyFile, '--yes']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /404 not_found/);

    const id = await awaitingRun();
    const viewer = await cli(['approve', id, '--key', keyFile, '--yes', '--json'], { PATCHNANNY_TOKEN: viewerToken });
    assert.equal(viewer.code, 1);
    assert.equal(JSON.parse(viewer.stdout).error.api.error.code, 'forbidden');

    // Without --yes and with no "y" on stdin, nothing is approved.
    const no = await cli(['approve', id, '--key', keyFile]);
    assert.equal(no.code, 1);
    assert.match(no.stderr, /not approved/);
    assert.equal((await stack.http('GET', `/v1/runs/${id}`)).body.run.phase, 'awaiting-approval');

    // The host's updates change after the plan was shown: approval is taken, the run ends plan-drift.
    writeFileSync(
      path.join(agent.fixtureDir, 'plan.txt'),
      [...PLAN, 'bash amd64 5.2.15-2 5.2.15-3 bookworm'].join('\n') + '\n',
    );
    assert.equal((await cli(['approve', id, '--key', keyFile, '--yes'])).code, 0);
    const drift = await cli(['run', id, '--follow']);
    assert.equal(drift.code, 1, drift.stderr);
    assert.match(drift.stdout, /outcome plan-drift/);
    writeFileSync(path.join(agent.fixtureDir, 'plan.txt'), PLAN.join('\n') + '\n');

    const again = await cli(['approve', id, '--key', keyFile, '--yes']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is plan-drift, not awaiting approval/);
  });

  it('reject --reason ends the run rejected', async () => {
    const id = await awaitingRun();
    const r = await cli(['reject', id, '--reason', 'not this week']);
    assert.equal(r.code, 0, r.stderr);
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'rejected');
    assert.equal(run.rejectReason, 'not this week');
  });

  it('exceptions and windows: add, list, remove', async () => {
    const added = await json(['exceptions', 'add', agent.id, '--package', 'nginx', '--reason', 'pinned by app team']);
    const list = await json(['exceptions', agent.id]);
    assert.deepEqual(
      list.map((e) => e.package),
      ['nginx'],
    );
    const shown = await cli(['exceptions', 'list', agent.id]);
    assert.match(shown.stdout, /nginx +- +never +true +alice +pinned by app team/);
    assert.equal((await cli(['exceptions', 'remove', agent.id, added.id as string])).code, 0);
    assert.deepEqual(await json(['exceptions', agent.id]), []);
    const bad = await cli(['exceptions', 'add', agent.id, '--package', 'nginx', '--reason', '']);
    assert.equal(bad.code, 2);

    const win = await json([
      'windows',
      'add',
      '--name',
      'cli nightly',
      '--agent',
      agent.id,
      '--cron',
      '0 3 * * *',
      '--duration',
      '3600',
      '--approval',
      'dry-run-only',
      '--paused',
    ]);
    assert.match(win.id as string, /^win-/);
    const table = await cli(['windows']);
    assert.match(table.stdout, new RegExp(`^${win.id as string} +cli nightly +cron 0 3 \\* \\* \\* +UTC +3600 s`, 'm'));
    const invalid = await cli([
      'windows',
      'add',
      '--name',
      'x',
      '--agent',
      agent.id,
      '--every',
      '60',
      '--duration',
      '10',
      '--cutoff',
      '20',
      '--approval',
      'auto',
    ]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /cutoffSeconds/);
    assert.equal((await cli(['windows', 'remove', win.id as string])).code, 0);
    assert.deepEqual(await json(['windows']), []);
  });

  it('label sets key=value and removes key- (others stay), refuses a bad label before calling the API; windows shows a selector', async () => {
    const labelsOf = async () => (await stack.http('GET', `/v1/agents/${agent.id}`)).body.agent.labels;
    const before = await labelsOf();
    const set = await json(['label', agent.id, 'role=web', 'env=prod']);
    assert.deepEqual(set.labels, { ...before, role: 'web', env: 'prod' });
    const edited = await cli(['label', agent.id, 'env-', 'tier=1']);
    assert.equal(edited.code, 0, edited.stderr);
    assert.match(edited.stdout, new RegExp(`^labelled ${agent.id}: .*role=web`));
    assert.deepEqual(await labelsOf(), { ...before, role: 'web', tier: '1' });
    for (const bad of [['Role=web'], ['novalue'], ['role=no spaces'], []]) {
      const r = await cli(['label', agent.id, ...bad]);
      assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
    }
    assert.match((await cli(['label', agent.id, 'Role=web'])).stderr, /label key/);
    const viewer = await cli(['label', agent.id, 'x=y'], { PATCHNANNY_TOKEN: viewerToken });
    assert.equal(viewer.code, 1, 'a viewer may not label');
    assert.deepEqual(await labelsOf(), { ...before, role: 'web', tier: '1' }, 'refusals changed nothing');

    const win = await json([
      'windows',
      'add',
      '--name',
      'cli web',
      '--selector',
      'role=web',
      '--every',
      '86400',
      '--duration',
      '600',
      '--approval',
      'dry-run-only',
      '--paused',
    ]);
    const table = await cli(['windows']);
    assert.match(table.stdout, /SELECTOR$/m);
    assert.match(table.stdout, new RegExp(`^${win.id as string} +cli web .* role=web$`, 'm'));
    assert.equal((await cli(['windows', 'remove', win.id as string])).code, 0);
    assert.equal((await cli(['label', agent.id, 'role-', 'tier-'])).code, 0);
    assert.deepEqual(await labelsOf(), before);
  });

  it('reviews, approve <planHash> and reject <planHash> decide a whole plan group; compliance counts the fleet', async () => {
    const second = await stack.startAgent('cli-02', PLAN);
    const awaitingOn = async (agentId: string) => {
      const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'required' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const run = await stack.waitForRun(r.body.run.id, (x) => x.phase === 'awaiting-approval' || x.outcome !== null);
      assert.equal(run.phase, 'awaiting-approval', run.failureReason);
      return run as { id: string; planHash: string };
    };
    const [a, b] = await Promise.all([awaitingOn(agent.id), awaitingOn(second.id)]);
    assert.equal(a.planHash, b.planHash, 'two hosts with the same updates have the same plan');

    const listed = await json(['reviews']);
    const group = (listed.groups as { planHash: string; hosts: number; runs: { id: string }[] }[]).find(
      (g) => g.planHash === a.planHash,
    );
    assert.ok(group, 'the plan is listed as one group');
    assert.deepEqual(group.runs.map((r) => r.id).sort(), [a.id, b.id].sort());
    const table = await cli(['reviews']);
    assert.match(table.stdout, new RegExp(`^${a.planHash} +2 +2 +1 `, 'm'), table.stdout);

    // One command, one signature per run, both runs approved and both complete.
    const approved = await cli(['approve', a.planHash, '--key', keyFile, '--yes', '--json']);
    assert.equal(approved.code, 0, approved.stderr);
    const answer = JSON.parse(approved.stdout) as { decided: { runId: string }[]; refused: unknown[] };
    assert.deepEqual(answer.decided.map((d) => d.runId).sort(), [a.id, b.id].sort());
    assert.deepEqual(answer.refused, []);
    for (const id of [a.id, b.id]) assert.equal((await stack.waitForOutcome(id)).outcome, 'completed');
    const gone = await cli(['approve', a.planHash, '--key', keyFile, '--yes']);
    assert.equal(gone.code, 1, 'no run awaits that plan any more');
    assert.match(gone.stderr, /no run awaits approval with plan/);

    const [c, d] = await Promise.all([awaitingOn(agent.id), awaitingOn(second.id)]);
    const rejected = await cli(['reject', c.planHash, '--reason', 'change freeze']);
    assert.equal(rejected.code, 0, rejected.stderr);
    for (const id of [c.id, d.id]) {
      const run = await stack.waitForOutcome(id);
      assert.equal(run.outcome, 'rejected');
      assert.equal(run.rejectReason, 'change freeze');
    }

    const fleet = await json(['compliance']);
    assert.ok((fleet.hosts as number) >= 2, JSON.stringify(fleet));
    const counted = ['upToDate', 'pending', 'failing', 'unreachable', 'unknown'].reduce(
      (n, k) => n + (fleet[k] as number),
      0,
    );
    assert.equal(counted, fleet.hosts, 'every accepted host is in exactly one state');
    const shown = await cli(['compliance']);
    assert.match(shown.stdout, /^HOSTS +UP TO DATE +PENDING/);
  });
  // Last: its extra host would change the fleet counts the tests above check.
  it("logs --follow prints a run's output as its agent streams it; logs shows it verified, to a viewer too", async () => {
    const host = await stack.startAgent('cli-logs', PLAN);
    writeFileSync(path.join(host.fixtureDir, 'lines-dry-run'), '20 10 0.1\n');
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: host.id, mode: 'dry-run' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id: string = r.body.run.id;
    const followed = await cli(['logs', id, '--follow']);
    assert.equal(followed.code, 0, followed.stderr);
    const numbers = followed.stdout
      .split('\n')
      .filter((l) => l.startsWith('fixture line'))
      .map((l) => Number(l.split(' ')[2]));
    assert.deepEqual(
      numbers,
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal((await stack.http('GET', `/v1/runs/${id}`)).body.run.outcome, 'completed');
    const shown = await cli(['logs', id], { PATCHNANNY_TOKEN: viewerToken });
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^== plan \(attempt 1\): verified ==$/m);
    assert.match(shown.stdout, /fixture line 000020 x{10}/);
    console.log(`$ patchnanny logs ${id}\n${shown.stdout.split('\n').slice(0, 4).join('\n')}`);
  });
});
