/** What every scenario shares: the running stack, the registered fleet, the simulated hosts. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { Knex } from 'knex';
import { agentTaskQueue } from '../contract';
import { forkModule, type ChildMessage, type Forked } from './ipc';
import type { SimConfig, SimHost } from './sim-agents';
import { DIST, type ApiProcess, type Temporal } from './stack';
import type { Http } from './util';

export interface Sizes {
  /** Scenario 1: measured sequential runs per side (after `warmup` unmeasured ones). */
  seq: number;
  warmup: number;
  /** Scenario 2: simulated hosts and runs. */
  fleet: number;
  /** Scenario 3: runs waiting for approval (≤ fleet). */
  approvals: number;
  /** Runs (or approvals) in flight at once while starting a batch. */
  startConcurrency: number;
  /** Processes the simulated fleet is spread over. */
  agentProcs: number;
  /** Scenario 4: autocannon connections and seconds per endpoint. */
  connections: number;
  readSeconds: number;
  /** Scenario 5: seconds the idle agent is watched. */
  idleSeconds: number;
  /** Wait before reading pg_stat_user_tables (PG 15 backends flush table stats after ≤ 10 s idle). */
  statsSettleMs: number;
  /** Scenario 6: agents holding a long poll open through the gate at once. */
  gatePolls: number;
  /** Scenario 7: the rollout's maxConcurrency (its hosts are the fleet's `fleet`). */
  rolloutConcurrency: number;
  /** Upper bound for one batch to finish before its unfinished runs count as failed. */
  batchTimeoutMs: number;
}

export interface RegisteredAgent {
  id: string;
  token: string;
}

export interface BenchContext {
  sizes: Sizes;
  tmp: string;
  tag: string;
  temporal: Temporal;
  db: Knex;
  /** The bench database's URL (the agent gate reads agents there). */
  databaseUrl: string;
  api: ApiProcess;
  http: Http;
  client: Client;
  bareControlQueue: string;
  bareControlPid: number;
  /** Baseline activity completions seen, by workflow id → ms timestamp. */
  reports: Map<string, number>;
  planned: Map<string, number>;
  scriptName: string;
  scriptSha256: string;
  seqAgent: RegisteredAgent;
  fleet: RegisteredAgent[];
  log(msg: string): void;
  startSims(mode: 'agent' | 'bare', hosts: SimHost[], opts?: SimOpts): Promise<Forked[]>;
}

export interface SimOpts {
  procs?: number;
  options?: 'sim' | 'default';
  /** Connect here instead of the Temporal server (the agent gate). */
  address?: string;
  perHost?: SimConfig['perHost'];
}

export const agentHost = (a: RegisteredAgent): SimHost => ({
  taskQueue: agentTaskQueue(a.id),
  agentId: a.id,
  token: a.token,
});

let simCount = 0;

/** Fork `procs` simulated-host processes sharing `hosts`; resolves when all Workers poll. */
export function simLauncher(base: Omit<BenchContext, 'startSims'>, onMessage: (m: ChildMessage) => void) {
  return async (mode: 'agent' | 'bare', hosts: SimHost[], opts: SimOpts = {}): Promise<Forked[]> => {
    const procs = Math.max(1, Math.min(opts.procs ?? base.sizes.agentProcs, hosts.length));
    const per = Math.ceil(hosts.length / procs);
    const forked: Forked[] = [];
    for (let p = 0; p < procs; p++) {
      const n = simCount++;
      const config: SimConfig = {
        mode,
        address: opts.address ?? base.temporal.address,
        perHost: opts.perHost,
        namespace: base.temporal.namespace,
        options: opts.options ?? 'sim',
        hosts: hosts.slice(p * per, (p + 1) * per),
        apiUrl: base.api.url,
        stateDir: path.join(base.tmp, `agent-state-${n}`),
        scriptName: base.scriptName,
        scriptSha256: base.scriptSha256,
      };
      if (config.hosts.length === 0) continue;
      const file = path.join(base.tmp, `sim-${n}.json`);
      writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
      const f = forkModule(path.join(DIST, 'bench/sim-agents.js'), [file], path.join(base.tmp, `sim-${n}.log`));
      f.on(onMessage);
      forked.push(f);
    }
    try {
      await Promise.all(forked.map((f) => f.ready));
    } catch (err) {
      await Promise.all(forked.map((f) => f.kill()));
      throw err;
    }
    return forked;
  };
}

export const killAll = (forked: Forked[]) => Promise.all(forked.map((f) => f.kill()));
