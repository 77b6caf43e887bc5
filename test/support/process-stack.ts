/**
 * The control plane as a real process the test can kill: dist/api/main.js (API + control worker,
 * as in production and bench/stack.ts) on a fixed free port, so agents find it again after a
 * restart. Agents, the database and the Temporal client come from Stack; a test that must kill
 * Temporal too brings its own dev server (ownDevServer) on a SQLite file it keeps, or a cluster
 * (scripts/dev/temporal-cluster.ts) and passes its address. With `gateProcess` the agent gate
 * runs as its own process too (dist/gate/main.js), as deployed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConfigurableTimeouts } from '../../contract';
import { connectClient, TemporalEnv } from '../../runtime/temporal';
import { stopChild, waitForHealth } from '../../scripts/dev/processes';
import { freePort, startDevServer, type DevServer } from '../../scripts/dev/temporal-server';
import { createTestDatabase } from './db';
import { ADMIN_TOKEN, DIST, FIXTURE_SCRIPTS, Stack, type TestAgent } from './stack';

/** Resolves when the child has exited (at once if it already has), with its code or signal. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode!);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
}

/** Every process below `pid` (children, grandchildren…), read from /proc. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid …": comm may hold spaces, so read after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(ppid, [...(parentOf.get(ppid) ?? []), Number(entry)]);
    } catch {
      /* gone meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number) =>
    (parentOf.get(p) ?? []).forEach((c) => {
      out.push(c);
      walk(c);
    });
  walk(pid);
  return out;
}

/** True while `pid` is alive and its environment carries `marker` (so a reused pid is never touched). */
export function aliveWith(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(marker);
  } catch {
    return false;
  }
}

export class ProcessStack extends Stack {
  api: ChildProcess | null = null;
  /** The environment the API + control worker process was last started with. */
  apiEnv: NodeJS.ProcessEnv = {};
  /** The gate process and its environment (`gateProcess` only). */
  gateChild: ChildProcess | null = null;
  gateEnv: NodeJS.ProcessEnv = {};
  private gateListen = '';
  private apiOut = '';
  private gateOut = '';
  private port = 0;
  /** Added to the API process's environment (e.g. PATCHNANNY_METRICS_LISTEN). */
  readonly apiExtraEnv: Record<string, string> = {};
  /** Scripts started by agents this stack killed: detached, so they outlive their agent. */
  private orphans: { pid: number; marker: string }[] = [];

  constructor(
    runDefaults?: ConfigurableTimeouts,
    temporalAddress?: string,
    /** `metrics`: the API and gate processes serve /metrics on free loopback ports, as compose runs them. */
    private readonly opts: { gateProcess?: boolean; metrics?: boolean } = {},
  ) {
    super(
      runDefaults,
      temporalAddress ? TemporalEnv.parse({ ...process.env, TEMPORAL_ADDRESS: temporalAddress }) : undefined,
    );
  }

  override get gateAddress(): string {
    return this.opts.gateProcess ? this.gateListen : super.gateAddress;
  }

  /** The gate in this process, or (`gateProcess`) dist/gate/main.js on free loopback ports. */
  protected override async startGate(): Promise<void> {
    if (!this.opts.gateProcess) return super.startGate();
    const [port, healthPort] = [await freePort(), await freePort()];
    this.gateListen = `127.0.0.1:${port}`;
    this.gateEnv = {
      ...process.env,
      DATABASE_URL: this.database.url,
      TEMPORAL_ADDRESS: this.temporalEnv.TEMPORAL_ADDRESS,
      TEMPORAL_NAMESPACE: this.temporalEnv.TEMPORAL_NAMESPACE,
      PATCHNANNY_GATE_KEY: randomBytes(32).toString('base64url'),
      PATCHNANNY_GATE_LISTEN: this.gateListen,
      PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${healthPort}`,
      ...(this.opts.metrics ? { PATCHNANNY_METRICS_LISTEN: `127.0.0.1:${await freePort()}` } : {}),
    };
    const child = spawn(process.execPath, [path.join(DIST, 'gate/main.js')], {
      env: this.gateEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (b: Buffer) => (this.gateOut += b.toString()));
    child.stderr.on('data', (b: Buffer) => (this.gateOut += b.toString()));
    this.gateChild = child;
    this.cleanups.push(() => stopChild(child));
    await waitForHealth(
      `http://127.0.0.1:${healthPort}`,
      child,
      `; output:\n${this.gateOut}`,
      60_000,
      'the agent gate',
    );
  }

  /** Everything the gate process printed. */
  gateOutput(): string {
    return this.gateOut;
  }

  override async start(scriptsDir = FIXTURE_SCRIPTS): Promise<this> {
    this.database = await createTestDatabase();
    await this.startGate();
    this.temporal = await connectClient(this.temporalEnv);
    this.port = await freePort();
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    this.cleanups.unshift(async () => {
      if (this.api) await stopChild(this.api);
      for (const o of this.orphans) if (aliveWith(o.pid, o.marker)) process.kill(o.pid, 'SIGKILL');
    });
    await this.startApi(scriptsDir);
    this.enrolToken = await this.createEnrolToken({ preAccepted: true, maxUses: null, expiresInSeconds: 3600 });
    await this.registerTestApproverKeys();
    return this;
  }

  /** Start dist/api/main.js on this stack's port, database, Temporal and control queue. */
  async startApi(scriptsDir = FIXTURE_SCRIPTS): Promise<ChildProcess> {
    const d = this.runDefaults;
    this.apiEnv = {
      ...process.env,
      DATABASE_URL: this.database.url,
      TEMPORAL_ADDRESS: this.temporalEnv.TEMPORAL_ADDRESS,
      TEMPORAL_NAMESPACE: this.temporalEnv.TEMPORAL_NAMESPACE,
      PORT: String(this.port),
      HOST: '127.0.0.1',
      PATCHNANNY_ADMIN_TOKENS: `alice:${ADMIN_TOKEN}`,
      PATCHNANNY_SCRIPTS_DIR: this.signedCopy(scriptsDir), // signed with the stack's key, as a release is
      PATCHNANNY_CONTROL_QUEUE: this.controlQueue,
      PATCHNANNY_APPROVAL_TIMEOUT_MS: String(d.approvalMs),
      PATCHNANNY_AGENT_PICKUP_TIMEOUT_MS: String(d.agentPickupMs),
      PATCHNANNY_SCRIPT_TIMEOUT_MS: String(d.scriptMs),
      ...(this.opts.metrics ? { PATCHNANNY_METRICS_LISTEN: `127.0.0.1:${await freePort()}` } : {}),
      ...this.apiExtraEnv,
    };
    const child = spawn(process.execPath, [path.join(DIST, 'api/main.js')], {
      env: this.apiEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (b: Buffer) => (this.apiOut += b.toString()));
    child.stderr.on('data', (b: Buffer) => (this.apiOut += b.toString()));
    this.api = child;
    await waitForHealth(this.baseUrl, child, `; output:\n${this.apiOut}`);
    // The API answers before the control worker polls; a run started now waits for it anyway.
    return child;
  }

  /** Everything the control-plane processes printed, across restarts. */
  apiOutput(): string {
    return this.apiOut;
  }

  /** Kill the control plane (API + control worker) and wait until it is gone. */
  async killApi(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | string> {
    const child = this.api!;
    child.kill(signal);
    return exited(child);
  }

  /**
   * kill -9 an agent. Its running script is detached (its own process group, so a cancel can stop
   * the package manager) and outlives it, as on a real host; the stack kills it at stop().
   */
  async killAgent(agent: TestAgent): Promise<void> {
    const marker = `PN_FIXTURE_DIR=${agent.fixtureDir}`;
    for (const pid of descendants(agent.process.pid!)) this.orphans.push({ pid, marker });
    agent.process.kill('SIGKILL');
    await exited(agent.process);
  }
}

/** A Temporal dev server of the test's own, killable and restartable on the same port and SQLite file. */
export interface OwnDevServer {
  address: string;
  server: DevServer;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function ownDevServer(dir: string): Promise<OwnDevServer> {
  const opts = {
    port: await freePort(),
    uiPort: null,
    dbFile: path.join(dir, 'temporal.db'),
    logFile: path.join(dir, 'temporal.log'),
  };
  const own: OwnDevServer = {
    address: `127.0.0.1:${opts.port}`,
    server: await startDevServer(opts),
    kill: async () => {
      own.server.process.kill('SIGKILL');
      await exited(own.server.process);
    },
    restart: async () => {
      own.server = await startDevServer(opts);
    },
    stop: () => own.server.stop(),
  };
  return own;
}
