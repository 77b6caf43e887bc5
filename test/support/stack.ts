/**
 * A real control plane for one test file: its own PostgreSQL database, the Koa API on a free
 * port and the control worker on a task queue of its own, against the test run's Temporal dev
 * server (TEMPORAL_ADDRESS, started by scripts/dev/test.ts). Agents run as real child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { ed25519 } from '@noble/curves/ed25519.js';
import { createApp } from '../../api/app';
import { signApproval, toBase64Url, type SignedApproval } from '../../contract/approval';
import { createControlWorker } from '../../control-worker';
import { connect } from '../../db';
import { scriptsService } from '../../api/scripts/service';
import type { ConfigurableTimeouts } from '../../contract';
import { connectClient, TemporalEnv, workflowSource } from '../../runtime/temporal';
import { GateEnv } from '../../gate/config';
import { startGate, type Gate } from '../../gate/proxy';
import { stopChild } from '../../scripts/dev/processes';
import { generateSigningKey, signScriptsDir } from '../../runtime/script-signing';
import { createTestDatabase, type TestDatabase } from './db';
import { waitFor } from './wait';
import { renderLog } from '../../scripts/dev/log-lines';

try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  /* already installed in this process */
}

export const DIST = path.resolve(__dirname, '../..');
export const FIXTURE_SCRIPTS = path.join(DIST, '../test/fixtures/scripts');
export const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** Window fields for a window that fires only when a test triggers it: weekly, starting in 2030. */
export const TRIGGER_ONLY_WINDOW = {
  recurrence: { cron: '0 2 * * 0' },
  startAt: '2030-01-01T00:00:00Z',
  durationSeconds: 3600,
  cutoffSeconds: 60,
};

export interface HttpResult {
  status: number;
  body: any;
}

export interface TestAgent {
  id: string;
  /** The environment the agent process was started with (what a deployment must set, test/deploy compares). */
  env: NodeJS.ProcessEnv;
  token: string;
  fixtureDir: string;
  stateDir: string;
  process: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/**
 * How long an agent may take to start polling. Generous: on a 2-core machine running three test
 * files at once (and CI's other work) a healthy agent has been seen to need more than 30 s.
 */
const AGENT_START_MS = 90_000;

export class Stack {
  readonly controlQueue = `patch-control-${randomBytes(4).toString('hex')}`;
  private server?: Server;
  private worker?: Worker;
  private workerDone?: Promise<void>;
  /** Set if the control worker stops on its own: waits fail with it at once, stop() rethrows it. */
  private workerCrash?: Error;
  private agents: TestAgent[] = [];
  protected cleanups: (() => Promise<void>)[] = [];
  /** Every agent's state and fixture folder lives here; removed by stop(). */
  protected readonly tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-stack-'));
  /** This stack's script signing key: the scripts it serves are a copy signed with it, its agents trust it. */
  readonly scriptKey = generateSigningKey();
  database!: TestDatabase;
  temporal!: Client;
  /** The agent gate every agent of this stack connects through (in this process; its lines in gateLog). */
  gate!: Gate;
  /** host:port agents connect to: the gate above, or a gate process (ProcessStack). */
  get gateAddress(): string {
    return this.gate.address;
  }
  readonly gateKey = randomBytes(32).toString('base64url');
  readonly gateLog: string[] = [];
  baseUrl = '';
  /** A pre-accepted enrolment token with unlimited uses for an hour, made through the API by start(). */
  enrolToken = '';

  /** When set, the control worker reaches the database through this URL (e.g. a proxy the test can cut). */
  controlDatabaseUrl?: (directUrl: string) => string;

  /**
   * `runDefaults` stand for the PATCHNANNY_*_TIMEOUT_MS settings of the API and control worker;
   * `temporalEnv` is the test run's server unless a test brings its own.
   */
  constructor(
    readonly runDefaults: ConfigurableTimeouts = { approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: 60_000 },
    readonly temporalEnv: TemporalEnv = TemporalEnv.parse(process.env),
  ) {}

  /** Start API + control worker; `scriptsDir` is loaded into the scripts table. */
  async start(scriptsDir = FIXTURE_SCRIPTS): Promise<this> {
    this.database = await createTestDatabase();
    await this.startGate();
    await scriptsService({ db: this.database.db }).load(this.signedCopy(scriptsDir));
    this.temporal = await connectClient(this.temporalEnv);
    const app = createApp({
      db: this.database.db,
      temporal: this.temporal,
      admins: [{ name: 'alice', token: ADMIN_TOKEN }],
      controlQueue: this.controlQueue,
      runDefaults: this.runDefaults,
    });
    this.server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => this.server!.once('listening', () => r()));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    this.enrolToken = await this.createEnrolToken({ preAccepted: true, maxUses: null, expiresInSeconds: 3600 });
    await this.registerTestApproverKeys();
    const controlDb = this.controlDatabaseUrl
      ? connect(this.controlDatabaseUrl(this.database.url), { max: 4 })
      : this.database.db;
    if (controlDb !== this.database.db) this.cleanups.push(() => controlDb.destroy());
    this.worker = await createControlWorker(
      this.temporalEnv,
      controlDb,
      this.controlQueue,
      this.runDefaults,
      this.temporal,
    );
    this.workerDone = this.worker.run().catch((err: unknown) => {
      const why = err instanceof Error ? err.message : String(err);
      this.workerCrash = new Error(`control worker crashed: ${why}`, { cause: err });
      console.error(this.workerCrash);
    });
    return this;
  }

  /** A copy of a scripts folder signed with this stack's key (as a release is signed). */
  signedCopy(scriptsDir: string): string {
    const out = this.tmpDir();
    signScriptsDir(scriptsDir, [this.scriptKey.privatePem], out);
    return out;
  }

  /** Each test approver's Ed25519 secret key and key id, registered by start() (issue 10: approvals are signed). */
  readonly approverKeys = new Map<string, { keyId: string; secret: Uint8Array }>();

  /** Register an approver key for each name, through the API as the admin; before any run starts, so runs pin them. */
  async registerTestApproverKeys(names: readonly string[] = ['alice', 'bob']): Promise<void> {
    for (const owner of names) {
      // Keys are held by people who may approve: alice is the stack's bootstrap admin, the others
      // are made approver users first.
      if (owner !== 'alice') {
        const u = await this.http('POST', '/v1/users', { body: { name: owner, role: 'approver' } });
        if (u.status !== 201 && u.status !== 409)
          throw new Error(`user ${owner}: ${u.status} ${JSON.stringify(u.body)}`);
      }
      const secret = ed25519.utils.randomSecretKey();
      const publicKey = toBase64Url(ed25519.getPublicKey(secret));
      const r = await this.http('POST', '/v1/keys', { body: { owner, publicKey } });
      if (r.status !== 201) throw new Error(`approver key not registered: ${r.status} ${JSON.stringify(r.body)}`);
      this.approverKeys.set(owner, { keyId: r.body.key.id, secret });
    }
  }

  /** A signed approval of `planHash` for `runId` by `by` with their test key (for a signal, or the API body). */
  signApproval(runId: string, planHash: string, by = 'alice', at = new Date().toISOString()): SignedApproval {
    const key = this.approverKeys.get(by);
    if (!key) throw new Error(`no test approver key for ${by}`);
    return signApproval({ runId, planHash, by, at }, key.keyId, key.secret);
  }

  /** POST /v1/runs/:id/approve as the admin (alice), signed with alice's test key, as the CLI does. */
  async approve(runId: string, planHash: string, opts: { token?: string | null } = {}): Promise<HttpResult> {
    const { at, keyId, signature } = this.signApproval(runId, planHash, 'alice');
    return this.http('POST', `/v1/runs/${runId}/approve`, { ...opts, body: { planHash, at, keyId, signature } });
  }

  /** A fresh folder under this stack's temporary folder (removed by stop()). */
  tmpDir(): string {
    return mkdtempSync(path.join(this.tmp, 'dir-'));
  }

  /** POST /v1/enrolment-tokens as the admin; the token itself (shown once). */
  async createEnrolToken(body: Record<string, unknown> = {}): Promise<string> {
    const r = await this.http('POST', '/v1/enrolment-tokens', { body });
    if (r.status !== 201) throw new Error(`enrolment token not created: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.token;
  }

  /** The agent gate in front of this stack's Temporal, on free loopback ports. */
  protected async startGate(): Promise<void> {
    const env = GateEnv.parse({
      ...this.temporalEnv,
      DATABASE_URL: this.database.url,
      PATCHNANNY_GATE_KEY: this.gateKey,
      PATCHNANNY_GATE_LISTEN: '127.0.0.1:0',
      PATCHNANNY_GATE_HEALTH_LISTEN: '127.0.0.1:0',
    });
    this.gate = await startGate(env, this.database.db, (line) => this.gateLog.push(line));
    this.cleanups.unshift(() => this.gate.stop());
  }

  async http(
    method: string,
    urlPath: string,
    opts: { token?: string | null; body?: unknown; raw?: string } = {},
  ): Promise<HttpResult> {
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    const res = await fetch(this.baseUrl + urlPath, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(opts.body !== undefined || opts.raw !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /**
   * Start a real agent process (dist/agent-worker/main.js) that registers through the API and
   * polls its own task queue. Its fixture script reads the plan from `fixtureDir/plan.txt`;
   * `env` adds to (or overrides) the agent's environment.
   */
  async startAgent(
    hostname: string,
    plan: string[] = [],
    restart?: TestAgent,
    env: Record<string, string | undefined> = {},
  ): Promise<TestAgent> {
    const fixtureDir = restart?.fixtureDir ?? mkdtempSync(path.join(this.tmp, `fixture-${hostname}-`));
    const stateDir = restart?.stateDir ?? mkdtempSync(path.join(this.tmp, `agent-${hostname}-`));
    if (!restart) writeFileSync(path.join(fixtureDir, 'plan.txt'), plan.join('\n') + '\n');
    let out = '';
    const agentEnv: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: this.gateAddress, // agents reach Temporal only through the gate
      TEMPORAL_NAMESPACE: this.temporalEnv.TEMPORAL_NAMESPACE,
      PATCHNANNY_API_URL: this.baseUrl,
      PATCHNANNY_ENROL_TOKEN: this.enrolToken,
      PATCHNANNY_AGENT_STATE_DIR: stateDir,
      PATCHNANNY_AGENT_HOSTNAME: hostname,
      PATCHNANNY_AGENT_FAMILY: 'apt',
      PN_FIXTURE_DIR: fixtureDir,
      // Scripts get a minimal environment: the fixture state (and a chroot shell's root) is passed on by name.
      PATCHNANNY_SCRIPT_ENV: 'PN_FIXTURE_DIR,PN_CHROOT',
      PATCHNANNY_TRUSTED_SCRIPT_KEYS: this.scriptKey.publicLine,
      ...env,
    };
    const child = spawn(process.execPath, [path.join(DIST, 'agent-worker/main.js')], {
      env: agentEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const id = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL'); // a late agent left running would keep the test file alive for ever
        reject(new Error(`agent ${hostname} did not start within ${AGENT_START_MS / 1000} s:\n${out}`));
      }, AGENT_START_MS);
      child.once('exit', (code) => {
        clearTimeout(timer); // an agent that refuses to start must not keep the test file alive 30 s
        reject(new Error(`agent ${hostname} exited ${code}:\n${out}`));
      });
      // Up: polling its queue, or registered and waiting for an admin to accept it.
      const check = () => {
        const m = /\[agent\] (?:(\S+) .* polling|agent (\S+) is pending)/.exec(renderLog(out));
        if (m) {
          clearTimeout(timer);
          resolve(m[1] ?? m[2]);
        }
      };
      child.stdout.on('data', check);
    });
    child.removeAllListeners('exit');
    const identity = JSON.parse(readFileSync(path.join(stateDir, 'identity.json'), 'utf8'));
    const agent: TestAgent = {
      id,
      env: agentEnv,
      token: identity.token,
      fixtureDir,
      stateDir,
      process: child,
      output: () => out,
      stop: () => stopChild(child),
    };
    this.agents.push(agent);
    return agent;
  }

  /** Start the same host's agent again: same state folder (identity, verified scripts), same fixture. */
  restartAgent(agent: TestAgent, hostname: string): Promise<TestAgent> {
    return this.startAgent(hostname, [], agent);
  }

  /** Register an agent through the API without starting its process (an offline host). */
  async registerOffline(hostname: string): Promise<string> {
    const r = await this.http('POST', '/v1/agents', {
      token: this.enrolToken,
      body: { hostname, os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    if (r.status !== 201) throw new Error(`registration failed: ${JSON.stringify(r.body)}`);
    return r.body.agent.id;
  }

  /** Poll GET /v1/runs/:id until the predicate holds (or fail with the last state seen). */
  async waitForRun(id: string, until: (run: any) => boolean, timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      if (this.workerCrash) throw this.workerCrash;
      const r = await this.http('GET', `/v1/runs/${id}`);
      last = r.body?.run;
      if (last && until(last)) return last;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`run ${id} did not reach the expected state; last: ${JSON.stringify(last, null, 2)}`);
  }

  /** Poll `probe` until it returns something truthy (or fail naming `what`). */
  waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> {
    return waitFor(what, probe, timeoutMs, 200);
  }

  /** POST /v1/windows with a test's fields over plain defaults; the window as the API returns it. */
  async createWindow(body: Record<string, unknown>): Promise<any> {
    const r = await this.http('POST', '/v1/windows', {
      body: {
        name: 'test window',
        timezone: 'Europe/Berlin',
        durationSeconds: 60,
        cutoffSeconds: 10,
        approval: 'auto',
        ...body,
      },
    });
    if (r.status !== 201) throw new Error(`window not created: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.window;
  }

  /** A window's run rows, oldest first. */
  windowRuns(windowId: string): Promise<any[]> {
    return this.database.db('patch_runs').where({ window_id: windowId }).orderBy('created_at');
  }

  /** Fire a window now through its Schedule (POST …/trigger) and return the first run row it starts. */
  async triggerFirstRun(windowId: string, timeoutMs = 30_000): Promise<any> {
    const r = await this.http('POST', `/v1/windows/${windowId}/trigger`);
    if (r.status !== 202) throw new Error(`trigger refused: ${r.status} ${JSON.stringify(r.body)}`);
    const rows = await this.waitFor(
      'the window run',
      async () => {
        const rows = await this.windowRuns(windowId);
        return rows.length > 0 && rows;
      },
      timeoutMs,
    );
    return rows[0];
  }

  /**
   * Wait until the run's record has its outcome and its workflow has closed: a run records its
   * outcome first and then says it in Temporal (search attributes, completion), so a test that
   * compares the two must not look in between.
   */
  async waitForOutcome(id: string, timeoutMs = 30_000) {
    const started = Date.now();
    const run = await this.waitForRun(id, (r) => r.outcome !== null, timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    const closed = this.temporal.workflow.getHandle(id).result();
    const late = new Promise<never>((_, reject) => {
      const left = Math.max(5_000, timeoutMs - (Date.now() - started));
      timer = setTimeout(
        () => reject(new Error(`run ${id} recorded ${run.outcome} but its workflow did not close`)),
        left,
      );
    });
    try {
      await Promise.race([closed, late]);
    } finally {
      clearTimeout(timer);
    }
    return run;
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
    if (this.worker?.getState() === 'RUNNING') this.worker.shutdown();
    await this.workerDone;
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    await this.temporal?.connection.close();
    for (const cleanup of this.cleanups) await cleanup();
    await this.database?.drop();
    rmSync(this.tmp, { recursive: true, force: true });
    if (this.workerCrash) throw this.workerCrash;
  }
}

/**
 * Replay a finished workflow's whole history against today's workflow code, as a worker does after
 * a cache eviction or a restart: throws on any nondeterminism.
 */
export async function replayHistory(client: Client, workflowId: string): Promise<void> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  await Worker.runReplayHistory({ ...workflowSource(), replayName: workflowId }, history);
}
