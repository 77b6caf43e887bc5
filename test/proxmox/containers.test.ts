/**
 * Issue 11: the agent on a Proxmox VE node patches its LXC containers through `pct`, each a
 * target of its own. The node is the pct/pveversion stand-in (test/fixtures/pve); its containers
 * are real roots — debootstrapped Debian with real apt (the apt proof's sandbox) and a Rocky
 * Linux root with real dnf and its own rpm database — driven by a real agent process, through the
 * API, a real Temporal server and PostgreSQL, with the shipped patch scripts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DIST, Stack, TRIGGER_ONLY_WINDOW, type TestAgent } from '../support/stack';
import { AptSandbox } from '../scripts/sandboxes/apt';
import { OverlayRoot, RpmRoot } from './overlay-root';
import { PveStandIn } from './standin';

const SHIPPED_SCRIPTS = path.join(DIST, '../scripts/patch');
const RUN_MS = 180_000;
const A = 101; // Debian, exceptions of its own
const B = 102; // Debian sibling
const C = 103; // Debian, stopped
const R = 104; // Rocky Linux (dnf), on a storage that cannot snapshot
const U = 105; // Alpine: unsupported
const L = 106; // locked (backup)
const X = 107; // tagged patchnanny-exclude
const D = 108; // Rocky Linux, stopped, with defaults of its own (startIfStopped, snapshot)
const W = 109; // Rocky Linux, stopped, patched by a window that starts it

/** The node's kernel boot time (epoch s): what a container's reboot-required must not be judged by. */
const nodeBootTime = () => Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
const fileHash = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const names = (rows: { name: string }[]) => rows.map((r) => r.name).sort();

describe('Proxmox VE: the node agent patches its LXC containers through pct', () => {
  const stack = new Stack({ approvalMs: 120_000, agentPickupMs: 60_000, scriptMs: 120_000 });
  const a = new AptSandbox();
  const b = new AptSandbox();
  const c = new AptSandbox();
  const rocky = new RpmRoot();
  // Provisioned now: their core packages were installed after the node booted, before the container started.
  const rockyD = new RpmRoot('now');
  const rockyW = new RpmRoot('now');
  const alpine = new OverlayRoot({ ID: 'alpine', VERSION_ID: '3.20.0', PRETTY_NAME: 'Alpine Linux v3.20' });
  let pve: PveStandIn;
  let node: TestAgent;

  before(async () => {
    await Promise.all([
      stack.start(SHIPPED_SCRIPTS),
      a.create(),
      b.create(),
      c.create(),
      rocky.create(),
      rockyD.create(),
      rockyW.create(),
      alpine.create(),
    ]);
    pve = new PveStandIn(stack.tmpDir());
    pve.add({ vmid: A, hostname: 'web-a', root: a.root, ostype: 'debian', running: true });
    pve.add({ vmid: B, hostname: 'web-b', root: b.root, ostype: 'debian', running: true });
    pve.add({ vmid: C, hostname: 'batch-c', root: c.root, ostype: 'debian', running: false });
    pve.add({ vmid: R, hostname: 'rocky-r', root: rocky.root, ostype: 'rockylinux', running: true, storage: 'local' });
    pve.add({ vmid: U, hostname: 'alpine-u', root: alpine.root, ostype: 'alpine', running: true });
    pve.add({ vmid: L, hostname: 'locked-l', root: b.root, ostype: 'debian', running: true, lock: 'backup' });
    pve.add({
      vmid: X,
      hostname: 'skip-x',
      root: b.root,
      ostype: 'debian',
      running: true,
      tags: 'prod;patchnanny-exclude',
    });
    pve.add({ vmid: D, hostname: 'rocky-d', root: rockyD.root, ostype: 'rockylinux', running: false });
    pve.add({ vmid: W, hostname: 'rocky-w', root: rockyW.root, ostype: 'rockylinux', running: false });
    node = await stack.startAgent('pve1', [], undefined, { ...pve.agentEnv, PATCHNANNY_PVE_INVENTORY_MS: '1000' });
  });
  after(async () => {
    pve?.dispose(); // its state lives in the stack's folder, which stop() removes
    await stack.stop();
    for (const root of [a, b, c, rocky, rockyD, rockyW, alpine]) await root.dispose();
  });

  const containers = async () => (await stack.http('GET', `/v1/agents/${node.id}/containers`)).body.containers as any[];
  const startRun = async (body: Record<string, unknown>) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: node.id, ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  const outcome = async (id: string) => {
    const run = await stack.waitForOutcome(id, RUN_MS);
    return run;
  };
  /** Every package database that must not change when one container is patched. */
  const databases = () => ({
    node: fileHash('/var/lib/dpkg/status'),
    a: fileHash(path.join(a.root, 'var/lib/dpkg/status')),
    b: fileHash(path.join(b.root, 'var/lib/dpkg/status')),
    c: fileHash(path.join(c.root, 'var/lib/dpkg/status')),
    rocky: rocky.packageDb(),
  });

  it('reports its containers: families from their own os-release, stopped, locked, unsupported, excluded left out', async () => {
    // Eight containers, each asked for its config and os-release through pct: slow on a loaded machine.
    const list = await stack.waitFor(
      'the inventory',
      async () => {
        const l = await containers();
        return l.length === 8 && l;
      },
      120_000,
    );
    const by = new Map(list.map((ct) => [ct.vmid, ct]));
    assert.deepEqual([...by.keys()], [A, B, C, R, U, L, D, W]);
    assert.equal(by.get(A).family, 'apt');
    assert.equal(by.get(A).os.id, 'debian');
    assert.equal(by.get(A).status, 'running');
    assert.equal(by.get(C).status, 'stopped');
    assert.equal(by.get(C).family, 'apt', 'a stopped container falls back to its config ostype');
    assert.equal(by.get(R).family, 'dnf');
    assert.equal(by.get(R).os.prettyName, 'Rocky Linux 9.4 (Blue Onyx)');
    assert.equal(by.get(U).family, null);
    assert.match(by.get(U).unsupported, /no patch script for Alpine Linux v3\.20/);
    assert.equal(by.get(L).lock, 'backup');
    const refused = await stack.http('POST', '/v1/runs', { body: { agentId: node.id, container: U, mode: 'dry-run' } });
    assert.equal(refused.status, 409);
    assert.match(refused.body.error.message, /container 105 is unsupported: no patch script for Alpine/);
    const excluded = await stack.http('POST', '/v1/runs', {
      body: { agentId: node.id, container: X, mode: 'dry-run' },
    });
    assert.equal(excluded.status, 409, 'an excluded container is no target');
  });

  it('a tampered script is executed in no container', async () => {
    const before = databases();
    const original = await stack.database.db('scripts').where({ name: 'apt-update.sh' }).first();
    await stack.database
      .db('scripts')
      .where({ name: 'apt-update.sh' })
      .update({ content: "#!/bin/bash\ntouch /pwned\necho '{}'\n" });
    try {
      pve.mark('tampered');
      const id = await startRun({ container: B, mode: 'apply', approval: 'auto' });
      const run = await outcome(id);
      assert.equal(run.outcome, 'failed');
      assert.match(run.failureReason, /^script-hash-mismatch: /);
      const after = pve.calls().slice(pve.calls().indexOf('# tampered'));
      assert.equal(
        after.filter((l) => l.startsWith(`exec ${B} -- /bin/bash`)).length,
        0,
        'no script reached the container',
      );
      assert.deepEqual(databases(), before);
    } finally {
      await stack.database.db('scripts').where({ name: 'apt-update.sh' }).update({ content: original.content });
    }
  });

  it("container A's exception keeps A's package back and leaves B's to be upgraded", async () => {
    const exc = await stack.http('POST', `/v1/agents/${node.id}/exceptions`, {
      body: { package: 'pn-beta', reason: 'A waits for its vendor', container: A },
    });
    assert.equal(exc.status, 201, JSON.stringify(exc.body));
    assert.equal(exc.body.exception.container, A);
    const nodeOwn = await stack.http('GET', `/v1/agents/${node.id}/exceptions?container=${B}`);
    assert.deepEqual(nodeOwn.body.exceptions, [], "B has none of A's exceptions");

    const [ra, rb] = await Promise.all([
      startRun({ container: A, mode: 'dry-run' }),
      startRun({ container: B, mode: 'dry-run' }),
    ]);
    assert.match(ra, new RegExp(`^patch-run\\.${node.id}\\.ct${A}\\.`), 'the run id names the container');
    const [runA, runB] = [await outcome(ra), await outcome(rb)];
    assert.equal(runA.outcome, 'completed', `${runA.failureReason}\n${node.output()}`);
    assert.equal(runB.outcome, 'completed', runB.failureReason);
    assert.equal(runA.container, A);
    assert.deepEqual(runA.exclusions, ['pn-beta']);
    assert.deepEqual(runB.exclusions, []);
    assert.deepEqual(runA.output[0].argv, ['--dry-run', '--exclude', 'pn-beta']);
    assert.deepEqual(names(runA.plan), ['pn-alpha', a.rebootPackage]);
    assert.deepEqual(names(runA.held), ['pn-beta']);
    assert.deepEqual(names(runB.plan), ['pn-alpha', 'pn-beta', b.rebootPackage]);
    // The runs list filters by container; Temporal's visibility names it too.
    const listed = await stack.http('GET', `/v1/runs?agentId=${node.id}&container=${A}`);
    assert.ok(listed.body.runs.every((r: any) => r.container === A));
    assert.ok(listed.body.runs.some((r: any) => r.id === ra));
    const described = await stack.temporal.workflow.getHandle(ra).describe();
    assert.deepEqual(described.searchAttributes.PatchContainer, [`${node.id}/${A}`]);
  });

  it('an approved apply in A changes A only: the node, B, C and the rpm container are byte-identical', async () => {
    const before = databases();
    const id = await startRun({ container: A, mode: 'apply', approval: 'required', snapshot: 'keep' });
    const waiting = await stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null, RUN_MS);
    assert.equal(waiting.phase, 'awaiting-approval', waiting.failureReason);
    assert.equal((await stack.approve(id, waiting.planHash)).status, 200);
    const run = await outcome(id);
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${node.output()}`);
    assert.equal(await a.installedVersion('pn-alpha'), a.version(2));
    assert.equal(await a.installedVersion('pn-beta'), a.version(1), "A's exception held");
    assert.equal(run.rebootRequired, true, "judged from the container's own /var/run/reboot-required");
    const after = databases();
    assert.notEqual(after.a, before.a);
    assert.deepEqual({ ...after, a: '' }, { ...before, a: '' });
    assert.match(run.containerReport.snapshot, /^patchnanny-[0-9A-Z]{26}$/);
    assert.deepEqual(pve.snapshots(A), [run.containerReport.snapshot], 'snapshot taken before apply');
    const snapIdx = pve.calls().indexOf(`snapshot ${A} ${run.containerReport.snapshot}`);
    const applyIdx = pve
      .calls()
      .findIndex(
        (l, i) => i > snapIdx && l.startsWith(`exec ${A} -- /bin/bash -c`) && l.endsWith('--apply --exclude pn-beta'),
      );
    assert.ok(snapIdx >= 0 && applyIdx > snapIdx, 'the snapshot came before the apply');
  });

  it('a container whose storage cannot snapshot is refused before any change when the run asks for a snapshot', async () => {
    // Its plan opens its rpm database (which may touch it): what must not change is what is installed.
    const before = { ...databases(), rocky: await rocky.installed() };
    pve.mark('nosnap');
    const refused = await outcome(await startRun({ container: R, mode: 'apply', approval: 'auto', snapshot: 'keep' }));
    assert.equal(refused.outcome, 'failed');
    assert.match(refused.failureReason, /container-snapshot-unsupported: .*snapshot feature is not available/);
    const calls = pve.calls().slice(pve.calls().indexOf('# nosnap'));
    assert.equal(calls.filter((l) => l.startsWith(`exec ${R} -- /bin/bash -c`) && l.includes('--apply')).length, 0);
    assert.deepEqual({ ...databases(), rocky: await rocky.installed() }, before);
  });

  it('the rpm container plans and applies with its own dnf; its siblings and the node are untouched', async () => {
    const before = databases();
    const id = await startRun({ container: R, mode: 'apply', approval: 'auto' });
    const run = await outcome(id);
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${node.output()}`);
    assert.equal(run.script.name, 'dnf-update.sh');
    assert.deepEqual(names(run.plan), ['kernel-pn', 'pn-alpha', 'pn-beta']);
    assert.equal(await rocky.installedVersion('pn-alpha'), '2.0-1');
    const after = databases();
    assert.notEqual(after.rocky, before.rocky);
    assert.deepEqual({ ...after, rocky: '' }, { ...before, rocky: '' });
  });

  it('a stopped container is skipped unless startIfStopped, which starts it, patches and stops it again', async () => {
    const skipped = await outcome(await startRun({ container: C, mode: 'dry-run' }));
    assert.equal(skipped.outcome, 'skipped-container-stopped');
    const run = await outcome(await startRun({ container: C, mode: 'dry-run', startIfStopped: true }));
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${node.output()}`);
    assert.deepEqual(names(run.plan), ['pn-alpha', 'pn-beta', c.rebootPackage]);
    assert.equal(run.containerReport.startedAndStopped, true);
    assert.equal(pve.isRunning(C), false, 'stopped again');
    const calls = pve.calls();
    assert.ok(calls.lastIndexOf(`start ${C}`) < calls.lastIndexOf(`shutdown ${C}`));
  });

  it('a locked container is retried with backoff, then skipped-container-locked; a gone one ends container-gone', async () => {
    pve.mark('locked');
    const run = await outcome(await startRun({ container: L, mode: 'dry-run', timeouts: { containerLockMs: 4000 } }));
    assert.equal(run.outcome, 'skipped-container-locked');
    assert.match(run.failureReason, /locked \(backup\)/);
    const tries = pve
      .calls()
      .slice(pve.calls().indexOf('# locked'))
      .filter((l) => l === `config ${L}`).length;
    assert.ok(tries >= 2, `asked again while locked (${tries} times)`);

    const id = await startRun({ container: B, mode: 'dry-run' });
    pve.remove(B); // destroyed (or migrated) before the run reached it
    const gone = await outcome(id);
    assert.equal(gone.outcome, 'container-gone', gone.failureReason);
    await stack.waitFor(
      'B gone from the inventory',
      async () => (await containers()).find((ct) => ct.vmid === B)?.goneAt,
    );
    const refused = await stack.http('POST', '/v1/runs', { body: { agentId: node.id, container: B, mode: 'dry-run' } });
    assert.equal(refused.status, 409);
  });

  it('a failing apply is rolled back to the snapshot it took before', async () => {
    await c.publishBroken();
    const before = fileHash(path.join(c.root, 'var/lib/dpkg/status'));
    const run = await outcome(
      await startRun({ container: C, mode: 'apply', approval: 'auto', startIfStopped: true, snapshot: 'rollback' }),
    );
    assert.equal(run.outcome, 'failed', run.failureReason);
    assert.equal(run.containerReport.rolledBack, true);
    assert.ok(pve.calls().includes(`rollback ${C} ${run.containerReport.snapshot} --start 1`));
    assert.equal(fileHash(path.join(c.root, 'var/lib/dpkg/status')), before, 'the root is back as it was');
    assert.equal(await c.installedVersion('pn-alpha'), c.version(1));
  });

  it('a window targets containers: each gets its own run, named by its container', async () => {
    const window = await stack.createWindow({
      ...TRIGGER_ONLY_WINDOW,
      approval: 'dry-run-only',
      targets: {
        agentIds: [],
        containers: [
          { agentId: node.id, vmid: R },
          { agentId: node.id, vmid: C },
          { agentId: node.id, vmid: U },
        ],
      },
    });
    const r = await stack.http('POST', `/v1/windows/${window.id}/trigger`);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const rows = await stack.waitFor('both container runs', async () => {
      const rows = await stack.windowRuns(window.id);
      return rows.length === 2 && rows;
    });
    const runs = await Promise.all(rows.map((row: any) => outcome(row.id)));
    const byContainer = new Map(runs.map((run) => [run.container, run]));
    assert.equal(byContainer.get(R).outcome, 'completed', byContainer.get(R).failureReason);
    assert.match(byContainer.get(R).id, new RegExp(`^patch-run\\.${node.id}\\.ct${R}\\.`));
    assert.equal(byContainer.get(C).outcome, 'skipped-container-stopped', 'a window does not start stopped containers');
    const described = await stack.temporal.workflow.getHandle(byContainer.get(R).id).describe();
    assert.deepEqual(described.searchAttributes.PatchContainer, [`${node.id}/${R}`]);
  });
  it('a rollout targets containers, listed or all of a node: each its own run; unsupported ones recorded as skipped', async () => {
    const ended = (id: string) =>
      stack.waitFor(
        `rollout ${id} to end`,
        async () => {
          const r = (await stack.http('GET', `/v1/rollouts/${id}`)).body.rollout;
          return (
            ['halted', 'aborted', 'completed'].includes(r.state) &&
            r.hosts.every((h: any) => !h.runId || h.outcome) &&
            r
          );
        },
        RUN_MS,
      );
    // Every container the node reports now (B left it above; X is excluded by its tag, never reported).
    const all = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { containersOf: [node.id] }, mode: 'dry-run', approval: 'auto', maxConcurrency: 1 },
    });
    assert.equal(all.status, 201, JSON.stringify(all.body));
    assert.deepEqual(all.body.rollout.hosts.map((h: any) => h.container).sort(), [A, C, R, L, D, W].sort());
    assert.equal(all.body.rollout.skippedTargets.length, 1);
    assert.match(
      all.body.rollout.skippedTargets[0].reason,
      new RegExp(`^container ${U} is unsupported: no patch script for Alpine`),
    );
    assert.equal((await stack.http('POST', `/v1/rollouts/${all.body.rollout.id}/abort`)).status, 202);
    assert.equal((await ended(all.body.rollout.id)).state, 'aborted');

    // Listed containers with the rollout's own startIfStopped: C is started for its run and stopped again.
    const listed = await stack.http('POST', '/v1/rollouts', {
      body: {
        targets: { containers: [A, R, C].map((vmid) => ({ agentId: node.id, vmid })) },
        mode: 'dry-run',
        approval: 'auto',
        maxConcurrency: 2,
        startIfStopped: true,
      },
    });
    assert.equal(listed.status, 201, JSON.stringify(listed.body));
    const done = await ended(listed.body.rollout.id);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    for (const h of done.hosts) {
      assert.equal(h.outcome, 'completed', `container ${h.container}`);
      assert.match(h.runId, new RegExp(`^patch-run\\.${node.id}\\.ct${h.container}\\.`));
      const run = (await stack.http('GET', `/v1/runs/${h.runId}`)).body.run;
      assert.equal(run.container, h.container);
      assert.equal(run.containerOptions.startIfStopped, true);
      assert.equal(run.containerOptions.from.startIfStopped, 'run', "the rollout's own request");
    }
    const c = done.hosts.find((h: any) => h.container === C);
    assert.equal((await stack.http('GET', `/v1/runs/${c.runId}`)).body.run.containerReport.startedAndStopped, true);
    assert.equal(pve.isRunning(C), false, 'stopped again');

    // A container the node never reported, or container options without container targets: 400.
    const missing = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { containers: [{ agentId: node.id, vmid: 999 }] }, mode: 'dry-run', approval: 'auto' },
    });
    assert.equal(missing.status, 400, JSON.stringify(missing.body));
    assert.equal(missing.body.error.field, 'targets.containers');
    const hostOnly = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { agentIds: [node.id] }, mode: 'dry-run', approval: 'auto', snapshot: 'keep' },
    });
    assert.equal(hostOnly.status, 400);
    assert.match(hostOnly.body.error.message, /container targets only/);
  });

  it("a container's defaults apply to a run that asked nothing: started, snapshotted, stopped; recorded with where they came from", async () => {
    const set = await stack.http('PUT', `/v1/agents/${node.id}/containers/${D}/defaults`, {
      body: { startIfStopped: true, snapshot: 'keep' },
    });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual(set.body.container.defaults, { startIfStopped: true, snapshot: 'keep' });
    const unknown = await stack.http('PUT', `/v1/agents/${node.id}/containers/999/defaults`, { body: {} });
    assert.equal(unknown.status, 404, 'only a container its node reported');
    const exc = await stack.http('POST', `/v1/agents/${node.id}/exceptions`, {
      body: { package: 'kernel-pn', reason: 'only non-core packages here', container: D },
    });
    assert.equal(exc.status, 201, JSON.stringify(exc.body));

    const run = await outcome(await startRun({ container: D, mode: 'apply', approval: 'auto' }));
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${node.output()}`);
    assert.deepEqual(run.containerOptions, {
      startIfStopped: true,
      snapshot: 'keep',
      from: { startIfStopped: 'container', snapshot: 'container' },
    });
    assert.equal(run.containerReport.startedAndStopped, true);
    assert.match(run.containerReport.snapshot, /^patchnanny-[0-9A-Z]{26}$/);
    assert.deepEqual(pve.snapshots(D), [run.containerReport.snapshot], 'the default snapshot was taken');
    assert.equal(pve.isRunning(D), false, 'stopped again');
    assert.deepEqual(names(run.plan), ['pn-alpha', 'pn-beta']);
    assert.equal(await rockyD.installedVersion('pn-alpha'), '2.0-1');
    // Its core package was installed after the node booted but before the container started:
    // judged by the node's boot this run would need a reboot; by the container's own start it does not.
    assert.ok((await rockyD.installTime('kernel-pn')) > nodeBootTime());
    assert.equal(run.rebootRequired, false, `only non-core packages changed: ${run.rebootReason}`);

    // The run says more than the container: run > container default.
    const asked = await outcome(
      await startRun({ container: D, mode: 'dry-run', startIfStopped: false, snapshot: 'none' }),
    );
    assert.equal(asked.outcome, 'skipped-container-stopped');
    assert.deepEqual(asked.containerOptions.from, { startIfStopped: 'run', snapshot: 'run' });
  });

  it('a window with startIfStopped starts a stopped container, patches and stops it; a core upgrade needs a reboot of the container', async () => {
    const refused = await stack.http('POST', '/v1/windows', {
      body: {
        ...TRIGGER_ONLY_WINDOW,
        name: 'hosts only',
        timezone: 'UTC',
        approval: 'auto',
        startIfStopped: true,
        targets: { agentIds: [node.id] },
      },
    });
    assert.equal(refused.status, 400, 'startIfStopped on a window without containers is refused');
    assert.equal(refused.body.error.field, 'startIfStopped');
    // The container's default says snapshot; the window says none, and the window wins.
    await stack.http('PUT', `/v1/agents/${node.id}/containers/${W}/defaults`, { body: { snapshot: 'keep' } });
    const window = await stack.createWindow({
      ...TRIGGER_ONLY_WINDOW,
      approval: 'auto',
      startIfStopped: true,
      snapshot: 'none',
      targets: { agentIds: [], containers: [{ agentId: node.id, vmid: W }] },
    });
    assert.equal(window.startIfStopped, true);
    pve.mark('window-w');
    const r = await stack.http('POST', `/v1/windows/${window.id}/trigger`);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const [row] = await stack.waitFor('the container run', async () => {
      const rows = await stack.windowRuns(window.id);
      return rows.length === 1 && rows;
    });
    const run = await outcome(row.id);
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${node.output()}`);
    assert.equal(run.mode, 'apply');
    assert.deepEqual(run.containerOptions, {
      startIfStopped: true,
      snapshot: 'none',
      from: { startIfStopped: 'window', snapshot: 'window' },
    });
    assert.equal(run.containerReport.startedAndStopped, true);
    assert.equal(run.containerReport.snapshot, null);
    assert.deepEqual(pve.snapshots(W), []);
    assert.deepEqual(names(run.plan), ['kernel-pn', 'pn-alpha', 'pn-beta']);
    assert.equal(await rockyW.installedVersion('kernel-pn'), '2.0-1');
    assert.equal(run.rebootRequired, true, 'a core package was installed after the container started');
    assert.match(run.rebootReason, /kernel-pn-2\.0-1/);
    assert.equal(pve.isRunning(W), false, 'stopped again');
    const calls = pve.calls().slice(pve.calls().indexOf('# window-w'));
    const apply = calls.findIndex((l) => l.startsWith(`exec ${W} -- /bin/bash -c`) && l.endsWith('--apply'));
    assert.ok(apply > 0, 'the apply ran in the container');
    assert.ok(calls.lastIndexOf(`start ${W}`, apply) >= 0, 'started before the apply');
    assert.ok(calls.indexOf(`shutdown ${W}`, apply) > apply, 'stopped after it');
  });
});
