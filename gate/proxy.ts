/**
 * The agent gate: a gRPC server speaking Temporal's WorkflowService to agents and forwarding what
 * policy.ts allows to the real frontend, byte for byte except the task token. Every WorkflowService
 * method is registered, so a refused one answers PERMISSION_DENIED naming the method rather than
 * UNIMPLEMENTED; other services (OperatorService, …) are not served at all.
 *
 * Agents authenticate with their own token (auth.ts); the namespace credential (TLS client
 * certificate or API key in the TemporalEnv variables) is the gate's and never leaves it. The
 * caller's `authorization` is never forwarded; its deadline is.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import * as proto from '@temporalio/proto';
import { Registry } from 'prom-client';
import type { Db } from '../db';
import { AgentAuth, type AuthResult } from './auth';
import { splitHostPort, type GateEnv } from './config';
import { gateMetrics, type CallResult } from './metrics';
import { decide } from './policy';

const SERVICE = 'temporal.api.workflowservice.v1.WorkflowService';
/** Temporal payloads can be several MB (its own limit is 4 MB per blob by default, 128 MB per gRPC message). */
const MAX_MESSAGE = 128 * 1024 * 1024;
const identity = (b: Buffer) => b;

/** Every WorkflowService method name, from the SDK's descriptors. */
export function workflowServiceMethods(): string[] {
  const root = proto as unknown as { lookupService(name: string): { methods: Record<string, unknown> } };
  return Object.keys(root.lookupService(SERVICE).methods);
}

/** Headers an SDK worker sends that the frontend may use; anything else (authorization first) is dropped. */
const FORWARDED_HEADERS = ['client-name', 'client-version', 'supported-server-versions'];

/** Where the gate says what it did: refusals and failures at `warn`, the rest at `info`. */
export interface GateLog {
  (line: string, level?: 'info' | 'warn'): void;
}

export interface Gate {
  /** host:port agents connect to. */
  address: string;
  /** host:port of GET /healthz. */
  healthAddress: string;
  /** Calls answered since start, by outcome (for the benchmark and tests). */
  stats: { forwarded: number; refused: number; cut: number; byMethod: Record<string, number> };
  /** Calls in flight upstream, by agent id (long polls mostly). */
  openCalls(): Record<string, number>;
  stop(): Promise<void>;
}

interface OpenCall {
  agentId: string;
  method: string;
  cut(code: grpc.status, why: string): void;
}

function upstreamCredentials(env: GateEnv): { creds: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const secured = Boolean(env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_CA || env.TEMPORAL_API_KEY);
  if ((env.TEMPORAL_TLS_CERT === undefined) !== (env.TEMPORAL_TLS_KEY === undefined))
    throw new Error('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both or neither');
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 15_000,
  };
  if (!secured) return { creds: grpc.credentials.createInsecure(), options };
  if (env.TEMPORAL_TLS_SERVER_NAME) {
    options['grpc.ssl_target_name_override'] = env.TEMPORAL_TLS_SERVER_NAME;
    options['grpc.default_authority'] = env.TEMPORAL_TLS_SERVER_NAME;
  }
  const creds = grpc.credentials.createSsl(
    env.TEMPORAL_TLS_CA ? readFileSync(env.TEMPORAL_TLS_CA) : null,
    env.TEMPORAL_TLS_KEY ? readFileSync(env.TEMPORAL_TLS_KEY) : null,
    env.TEMPORAL_TLS_CERT ? readFileSync(env.TEMPORAL_TLS_CERT) : null,
  );
  return { creds, options };
}

function serverCredentials(env: GateEnv): grpc.ServerCredentials {
  if (!env.PATCHNANNY_GATE_TLS_CERT || !env.PATCHNANNY_GATE_TLS_KEY) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    null,
    [
      {
        cert_chain: readFileSync(env.PATCHNANNY_GATE_TLS_CERT),
        private_key: readFileSync(env.PATCHNANNY_GATE_TLS_KEY),
      },
    ],
    false,
  );
}

const asError = (code: grpc.status, details: string): Partial<grpc.StatusObject> => ({ code, details });

/** Start the gate: gRPC for agents on PATCHNANNY_GATE_LISTEN, /healthz on PATCHNANNY_GATE_HEALTH_LISTEN. */
export async function startGate(env: GateEnv, db: Db, log: GateLog, metrics?: Registry): Promise<Gate> {
  const key = Buffer.from(env.PATCHNANNY_GATE_KEY, 'utf8');
  const namespace = env.TEMPORAL_NAMESPACE;
  const auth = new AgentAuth(db, Math.min(1000, env.PATCHNANNY_GATE_RECHECK_MS));
  const { creds, options } = upstreamCredentials(env);
  const upstream = new grpc.Client(env.TEMPORAL_ADDRESS, creds, options);
  const stats: Gate['stats'] = { forwarded: 0, refused: 0, cut: 0, byMethod: {} };
  const count = gateMetrics(metrics ?? new Registry(), () => openCount());
  /** Open calls by the caller's token hash: what a re-check may have to cut. */
  const open = new Map<string, Set<OpenCall>>();
  let stopping = false;
  /** Calls in flight upstream (long polls mostly), for /healthz. */
  const openCount = () => [...open.values()].reduce((n, calls) => n + calls.size, 0);

  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
    // Long polls last ~70 s; keep idle agent connections healthy, but let clients ping freely.
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  });

  for (const method of workflowServiceMethods()) {
    const path = `/${SERVICE}/${method}`;
    const handler: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
      let answered = false;
      const answer = (err: Partial<grpc.StatusObject> | null, res?: Buffer) => {
        if (answered) return;
        answered = true;
        callback(err, res);
      };
      const refuse = (code: grpc.status, agent: string | undefined, why: string, result: CallResult = 'refused') => {
        stats.refused++;
        if (!answered) count(method, result, grpc.status[code]);
        log(`refused ${method} agent=${agent ?? '-'} peer=${call.getPeer()}: ${why}`, 'warn');
        answer(asError(code, `${method} refused by the patchnanny gate: ${why}`));
      };
      if (stopping) return answer(asError(grpc.status.UNAVAILABLE, 'the gate is stopping'));
      // The caller may give up (deadline, worker shutdown) before or after the call goes upstream.
      let cancelled = false;
      let onCancel = () => {};
      call.on('cancelled', () => {
        cancelled = true;
        answered = true;
        onCancel();
      });
      const header = call.metadata.get('authorization')[0];
      void auth.authenticate(typeof header === 'string' ? header : undefined).then(
        (who: AuthResult) => {
          if (cancelled) return;
          if (!who.ok) return refuse(grpc.status[who.code], who.agentId, who.why);
          const decision = decide(method, call.request, { agentId: who.agentId, namespace, key });
          if (!decision.allow) return refuse(grpc.status.PERMISSION_DENIED, who.agentId, decision.why);

          const md = new grpc.Metadata();
          for (const name of FORWARDED_HEADERS) for (const v of call.metadata.get(name)) md.add(name, v);
          md.set('temporal-namespace', namespace);
          if (env.TEMPORAL_API_KEY) md.set('authorization', `Bearer ${env.TEMPORAL_API_KEY}`);

          const entry: OpenCall = {
            agentId: who.agentId,
            method,
            cut: (code, why) => {
              stats.cut++;
              up.cancel();
              refuse(code, who.agentId, why, 'cut');
            },
          };
          const calls = open.get(who.tokenHash) ?? new Set<OpenCall>();
          open.set(who.tokenHash, calls.add(entry));
          const done = () => {
            calls.delete(entry);
            if (calls.size === 0 && open.get(who.tokenHash) === calls) open.delete(who.tokenHash);
          };
          const up = upstream.makeUnaryRequest<Buffer, Buffer>(
            path,
            identity,
            identity,
            decision.request,
            md,
            { deadline: call.getDeadline() },
            (err, res) => {
              done();
              // Counted once: a call cut or given up by its caller was counted (or not) already.
              if (!answered)
                count(method, err ? 'upstream-error' : 'forwarded', grpc.status[err ? err.code : grpc.status.OK]);
              if (err) return answer({ code: err.code, details: err.details, metadata: err.metadata });
              stats.forwarded++;
              stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1;
              try {
                answer(null, decision.response && res ? decision.response(res) : res);
              } catch (e) {
                // A response the gate cannot rewrite is not handed out unbound.
                log(`cannot rewrite the ${method} response for ${who.agentId}: ${(e as Error).message}`, 'warn');
                answer(asError(grpc.status.INTERNAL, 'the gate could not bind the task token'));
              }
            },
          );
          onCancel = () => {
            done();
            up.cancel();
          };
        },
        (err: unknown) => {
          count(method, 'unavailable', 'UNAVAILABLE');
          log(`agent lookup failed for ${method}: ${(err as Error).message}`, 'warn');
          answer(asError(grpc.status.UNAVAILABLE, 'the gate cannot check agent tokens right now'));
        },
      );
    };
    server.register(path, handler, identity, identity, 'unary');
  }

  // Revocation: agents with open calls are looked up again every interval; a refused one is cut.
  let rechecking = false;
  const recheck = setInterval(() => {
    if (rechecking || open.size === 0) return;
    rechecking = true;
    auth
      .recheck([...open.keys()])
      .then((verdicts) => {
        for (const [hash, v] of verdicts) {
          if (v.ok) continue;
          const code = grpc.status[v.code];
          for (const c of [...(open.get(hash) ?? [])]) c.cut(code, `${v.why} (open ${c.method} cut)`);
          open.delete(hash);
        }
      })
      .catch((err: unknown) => log(`re-check failed: ${(err as Error).message}`, 'warn'))
      .finally(() => (rechecking = false));
  }, env.PATCHNANNY_GATE_RECHECK_MS);
  recheck.unref();

  const listen = splitHostPort(env.PATCHNANNY_GATE_LISTEN);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`,
      serverCredentials(env),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  const address = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${port}`;

  const health = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/healthz') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":{"code":"not_found","message":"GET /healthz"}}');
      return;
    }
    void Promise.all([
      db.raw('select 1').then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) =>
        upstream.makeUnaryRequest<Buffer, Buffer>(
          `/${SERVICE}/GetSystemInfo`,
          identity,
          identity,
          Buffer.alloc(0),
          env.TEMPORAL_API_KEY
            ? (() => {
                const m = new grpc.Metadata();
                m.set('authorization', `Bearer ${env.TEMPORAL_API_KEY}`);
                return m;
              })()
            : new grpc.Metadata(),
          { deadline: Date.now() + 2000 },
          (err) => resolve(!err),
        ),
      ),
    ]).then(([dbOk, temporalOk]) => {
      const ok = dbOk && temporalOk;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ ok, db: dbOk, temporal: temporalOk, openCalls: openCount() }));
    });
  });
  const hl = splitHostPort(env.PATCHNANNY_GATE_HEALTH_LISTEN);
  await new Promise<void>((resolve, reject) => {
    health.once('error', reject);
    health.listen(hl.port, hl.host, () => resolve());
  });
  const healthAddress = `${hl.host.includes(':') ? `[${hl.host}]` : hl.host}:${(health.address() as { port: number }).port}`;

  log(
    `listening on ${address} (${env.PATCHNANNY_GATE_TLS_CERT ? 'TLS' : 'plaintext'}) for namespace ${namespace}, upstream ${env.TEMPORAL_ADDRESS}; health on http://${healthAddress}/healthz`,
  );

  return {
    address,
    healthAddress,
    stats,
    openCalls() {
      const out: Record<string, number> = {};
      for (const calls of open.values()) for (const c of calls) out[c.agentId] = (out[c.agentId] ?? 0) + 1;
      return out;
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      clearInterval(recheck);
      // Open long polls are answered UNAVAILABLE so SDK workers retry (against a gate that is up).
      for (const calls of open.values())
        for (const c of [...calls]) c.cut(grpc.status.UNAVAILABLE, 'the gate is stopping');
      open.clear();
      server.forceShutdown();
      upstream.close();
      await new Promise<void>((r) => health.close(() => r()));
      log('stopped');
    },
  };
}
