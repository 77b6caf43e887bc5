/**
 * Raw WorkflowService calls as bytes, with or without an agent token: what a compromised host
 * could send to the gate (or to Temporal directly) without any SDK in the way.
 */
import * as grpc from '@grpc/grpc-js';
import { temporal } from '@temporalio/proto';

export const ws = temporal.api.workflowservice.v1;
const SERVICE = 'temporal.api.workflowservice.v1.WorkflowService';

export interface RawResult {
  code: grpc.status;
  details: string;
  res?: Buffer;
}

const clients = new Map<string, grpc.Client>();

export function rawClient(address: string): grpc.Client {
  let c = clients.get(address);
  if (!c) {
    c = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    clients.set(address, c);
  }
  return c;
}

export function closeRawClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

/** One unary call; resolves with the status (OK = 0) and, on success, the response bytes. */
export function rawCall(
  address: string,
  method: string,
  request: Uint8Array,
  opts: { token?: string; timeoutMs?: number; signal?: AbortSignal; namespace?: string } = {},
): Promise<RawResult> {
  const md = new grpc.Metadata();
  if (opts.token) md.set('authorization', `Bearer ${opts.token}`);
  if (opts.namespace) md.set('temporal-namespace', opts.namespace);
  return new Promise((resolve) => {
    const call = rawClient(address).makeUnaryRequest<Buffer, Buffer>(
      `/${SERVICE}/${method}`,
      (b) => b,
      (b) => b,
      Buffer.from(request),
      md,
      { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
      (err, res) =>
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '', res }),
    );
    opts.signal?.addEventListener('abort', () => call.cancel());
  });
}

/** Poll one activity task on `queue`; the response bytes decoded (taskToken empty when none came). */
export async function pollActivity(
  address: string,
  namespace: string,
  queue: string,
  opts: { token?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RawResult & { task?: temporal.api.workflowservice.v1.PollActivityTaskQueueResponse }> {
  const req = ws.PollActivityTaskQueueRequest.encode({
    namespace,
    taskQueue: { name: queue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    identity: 'raw-test-client',
  }).finish();
  const r = await rawCall(address, 'PollActivityTaskQueue', req, { timeoutMs: 30_000, ...opts, namespace });
  return r.res ? { ...r, task: ws.PollActivityTaskQueueResponse.decode(r.res) } : r;
}
