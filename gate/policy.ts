/**
 * What agent X may ask of Temporal through the gate, method by method. Anything not named here is
 * refused: an agent needs to poll its own activity queue, answer the tasks it received, and what an
 * unmodified @temporalio/worker needs to start and stop (system info, its namespace's description,
 * worker heartbeat/shutdown) — never to start, signal, update, query, describe, terminate, cancel
 * or list workflows, poll workflow tasks, or administer namespaces.
 *
 * Requests are only read here (protobufjs decode); the one rewrite, the task token, is done on the
 * raw bytes (wire.ts) so fields this SDK's descriptors do not know pass through untouched.
 */
import { temporal } from '@temporalio/proto';
import { agentTaskQueue } from '../contract/run-id';
import { bindToken, unbindToken } from './binding';
import { getBytesField, replaceBytesField } from './wire';

const ws = temporal.api.workflowservice.v1;

export interface Caller {
  agentId: string;
  /** The gate's namespace: the only one an agent may name. */
  namespace: string;
  key: Buffer;
}

/** Allowed: the request to forward, and how to rewrite the response (identity when absent). */
export type Decision =
  | { allow: true; request: Buffer; response?: (res: Buffer) => Buffer; longPoll?: boolean }
  | { allow: false; why: string };

type Rule = (req: Buffer, c: Caller) => Decision;

const refuse = (why: string): Decision => ({ allow: false, why });

function sameNamespace(given: string | null | undefined, c: Caller): string | null {
  return given === c.namespace ? null : `namespace ${JSON.stringify(given ?? '')} is not ${c.namespace}`;
}

/** Task token field in PollActivityTaskQueueResponse and in every Respond* and Heartbeat request. */
const TASK_TOKEN_FIELD = 1;

/** Respond* and Heartbeat (by task token): own namespace, and a token the gate bound to the caller's queue. */
function byBoundToken(decodeNamespace: (req: Buffer) => string | null | undefined): Rule {
  return (req, c) => {
    const wrongNs = sameNamespace(decodeNamespace(req), c);
    if (wrongNs) return refuse(wrongNs);
    const queue = agentTaskQueue(c.agentId);
    let bound: Buffer | undefined;
    try {
      bound = getBytesField(req, TASK_TOKEN_FIELD);
    } catch (err) {
      return refuse(`malformed request (${(err as Error).message})`);
    }
    if (!bound?.length) return refuse('no task token');
    const r = unbindToken(c.key, queue, bound);
    if (!r.ok) return refuse(r.why);
    return { allow: true, request: replaceBytesField(req, TASK_TOKEN_FIELD, () => r.token) };
  };
}

export const RULES: Record<string, Rule> = {
  GetSystemInfo: (req) => ({ allow: true, request: req }),

  DescribeNamespace: (req, c) => {
    const r = ws.DescribeNamespaceRequest.decode(req);
    if (r.id) return refuse('describe by namespace id is not allowed');
    const wrong = sameNamespace(r.namespace, c);
    return wrong ? refuse(wrong) : { allow: true, request: req };
  },

  PollActivityTaskQueue: (req, c) => {
    const r = ws.PollActivityTaskQueueRequest.decode(req);
    const wrong = sameNamespace(r.namespace, c);
    if (wrong) return refuse(wrong);
    const queue = agentTaskQueue(c.agentId);
    if (r.taskQueue?.name !== queue)
      return refuse(`task queue ${JSON.stringify(r.taskQueue?.name ?? '')} is not ${queue}`);
    return {
      allow: true,
      longPoll: true,
      request: req,
      // An empty response (the long poll timed out) has no token and stays as it is.
      response: (res) => replaceBytesField(res, TASK_TOKEN_FIELD, (t) => (t.length ? bindToken(c.key, queue, t) : t)),
    };
  },

  RespondActivityTaskCompleted: byBoundToken((b) => ws.RespondActivityTaskCompletedRequest.decode(b).namespace),
  RespondActivityTaskFailed: byBoundToken((b) => ws.RespondActivityTaskFailedRequest.decode(b).namespace),
  RespondActivityTaskCanceled: byBoundToken((b) => ws.RespondActivityTaskCanceledRequest.decode(b).namespace),
  RecordActivityTaskHeartbeat: byBoundToken((b) => ws.RecordActivityTaskHeartbeatRequest.decode(b).namespace),

  ShutdownWorker: (req, c) => {
    const r = ws.ShutdownWorkerRequest.decode(req);
    const wrong = sameNamespace(r.namespace, c);
    if (wrong) return refuse(wrong);
    // An activity-only worker has no sticky queue; naming one could end another worker's sticky polls.
    if (r.stickyTaskQueue) return refuse('a sticky task queue (workflow workers only)');
    const queue = agentTaskQueue(c.agentId);
    if (r.taskQueue && r.taskQueue !== queue) return refuse(`task queue ${r.taskQueue} is not ${queue}`);
    if (r.workerHeartbeat?.taskQueue && r.workerHeartbeat.taskQueue !== queue)
      return refuse(`heartbeat for task queue ${r.workerHeartbeat.taskQueue}`);
    return { allow: true, request: req };
  },

  RecordWorkerHeartbeat: (req, c) => {
    const r = ws.RecordWorkerHeartbeatRequest.decode(req);
    const wrong = sameNamespace(r.namespace, c);
    if (wrong) return refuse(wrong);
    const queue = agentTaskQueue(c.agentId);
    for (const hb of r.workerHeartbeat ?? [])
      if (hb.taskQueue && hb.taskQueue !== queue) return refuse(`heartbeat for task queue ${hb.taskQueue}`);
    return { allow: true, request: req };
  },
};

/** The decision for one call; a request that does not decode is refused, never forwarded. */
export function decide(method: string, req: Buffer, c: Caller): Decision {
  const rule = RULES[method];
  if (!rule) return refuse('not a call an agent makes');
  try {
    return rule(req, c);
  } catch (err) {
    return refuse(`malformed request (${(err as Error).message})`);
  }
}
