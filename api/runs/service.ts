import { randomInt } from 'node:crypto';
import { ApplicationFailure, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import {
  DEFAULT_CONTAINER_LOCK_WAIT_MS,
  newRunId,
  resolveContainerOptions,
  resolveRunTimeouts,
  type ConfigurableTimeouts,
  type PatchRunInput,
  type RunStatus,
} from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { getAgent } from '../../db/agents';
import { getWindow } from '../../db/windows';
import {
  deleteRun,
  getRun,
  planPackageOf,
  getRunCursor,
  getRunOutcome,
  getRunRecord,
  insertRunRows,
  listRuns,
  type PackageKind,
  type RunCursor,
  type RunRow,
} from '../../db/runs';
import type { SignedApproval } from '../../contract/approval';
import { approveUpdate, DECISION_REFUSED, rejectUpdate } from '../../workflows/messages';
import { patchRun } from '../../workflows/patch-run';
import { PatchContainer, PatchHost, PatchPhase } from '../../workflows/search-attributes';
import { containerDefaults, getContainer, type ContainerRow } from '../../db/containers';
import { ApiError, notFound } from '../errors';
import type { ListRunsQuery, StartRunBody } from './schema';
import { storedText } from '../../db/output';
import { requireHooks } from '../hooks/service';
import { DEFAULT_REBOOT_TIMEOUT_SECONDS } from '../../contract/rollout-policy';
import { iso } from '../views';

export interface RunsDeps {
  db: Db;
  temporal: Client;
  controlQueue: string;
  /** The configured run timeouts a run's `timeouts` override. */
  runDefaults: ConfigurableTimeouts;
}

/** A patch run as the API shows it; the id is the Temporal workflow id. */
function toRun(r: RunRow) {
  return {
    id: r.id,
    agentId: r.agent_id,
    mode: r.mode,
    approval: r.approval,
    phase: r.phase,
    outcome: r.outcome,
    failureReason: r.failure_reason,
    requestedBy: r.requested_by,
    script: r.script_name ? { name: r.script_name, sha256: r.script_sha256 } : null,
    exclusions: r.exclusions,
    planHash: r.plan_hash,
    approvedBy: r.approved_by,
    approvedAt: iso(r.approved_at),
    /** The signed statement the approval was made with: anyone can re-verify it against the key. */
    approvalSignature: r.approval_signature ?? null,
    /** Issue 12: the patch baseline that approved the run, with the rule that covered each package. */
    approvedByBaseline: r.approved_by_baseline ?? null,
    rejectedBy: r.rejected_by,
    rejectReason: r.reject_reason,
    exitCode: r.exit_code,
    rebootRequired: r.reboot_required,
    rebootReason: r.reboot_reason,
    windowId: r.window_id,
    windowStart: iso(r.window_start),
    overran: r.overran,
    /** A Proxmox VE container of the agent's node, and what the node did to it (docs/proxmox.md). */
    container: r.container,
    containerReport: r.container_report,
    /** startIfStopped and snapshot in effect on a container run, and where each came from (run, window, container, off). */
    containerOptions: r.container_options,
    fourEyes: r.four_eyes,
    securityOnly: r.security_only,
    /** Issue 12 (docs/reboot-and-hooks.md): the reboot policy and the hooks asked for. */
    reboot: r.reboot_policy ?? 'never',
    hooks: r.hooks,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    finishedAt: iso(r.finished_at),
  };
}
export type Run = ReturnType<typeof toRun>;

export function runsService({ db, temporal, controlQueue, runDefaults }: RunsDeps) {
  /** A container run needs a container its node reported, still there and supported (409 naming why not). */
  async function requireContainer(agentId: string, vmid: number): Promise<ContainerRow> {
    const ct = await getContainer(db, agentId, vmid);
    if (!ct) throw new ApiError('conflict', `agent ${agentId} has reported no container ${vmid}`, 'container');
    if (ct.gone_at)
      throw new ApiError(
        'conflict',
        `container ${vmid} left node ${agentId} at ${ct.gone_at.toISOString()}`,
        'container',
      );
    if (!ct.family)
      throw new ApiError(
        'conflict',
        `container ${vmid} is unsupported: ${ct.unsupported ?? 'no family detected'}`,
        'container',
      );
    return ct;
  }

  async function start(body: StartRunBody, requestedBy: string): Promise<Run> {
    const agent = await getAgent(db, body.agentId);
    if (!agent)
      throw new ApiError('validation_failed', `request body field agentId: unknown agent ${body.agentId}`, 'agentId');
    if (agent.status !== 'accepted')
      throw new ApiError(
        'agent_not_accepted',
        agent.status === 'pending'
          ? `agent ${agent.id} is pending acceptance (POST /v1/agents/${agent.id}/accept); nothing runs on it until then`
          : `agent ${agent.id} was revoked; nothing runs on it any more`,
        'agentId',
      );
    const vmid = body.container;
    // What the run says, else the container's defaults, else off; recorded on the run with where from.
    const containerOptions =
      vmid === undefined
        ? undefined
        : resolveContainerOptions({
            run: { startIfStopped: body.startIfStopped, snapshot: body.snapshot },
            container: containerDefaults(await requireContainer(agent.id, vmid)),
          });
    const id = newRunId(agent.id, Date.now(), () => randomInt(32) / 32, vmid);
    await requireHooks(db, body.hooks);
    const { containerLockMs, rebootMs, ...timeouts } = body.timeouts;
    const reboots = body.reboot !== 'never';
    const hooks = body.hooks && (body.hooks.pre || body.hooks.post) ? body.hooks : undefined;
    const input: PatchRunInput = {
      runId: id,
      agentId: agent.id,
      hostname: agent.hostname,
      mode: body.mode,
      approval: body.approval,
      requestedBy,
      timeouts: {
        ...resolveRunTimeouts(runDefaults, timeouts),
        ...(reboots ? { rebootMs: rebootMs ?? DEFAULT_REBOOT_TIMEOUT_SECONDS * 1000 } : {}),
      },
      ...(vmid !== undefined
        ? {
            container: {
              vmid,
              startIfStopped: containerOptions!.startIfStopped,
              snapshot: containerOptions!.snapshot,
              lockWaitMs: containerLockMs ?? DEFAULT_CONTAINER_LOCK_WAIT_MS,
            },
          }
        : {}),
      ...(body.securityOnly ? { securityOnly: true } : {}),
      ...(reboots ? { reboot: body.reboot } : {}),
      ...(hooks ? { hooks } : {}),
    };
    // The row and its audit entry together: the trail names every run that ever existed.
    const row = await db.transaction(async (trx) => {
      const [inserted] = await insertRunRows(trx, [
        {
          runId: id,
          agentId: agent.id,
          mode: body.mode,
          approval: body.approval,
          requestedBy,
          vmid,
          containerOptions,
          securityOnly: body.securityOnly,
          reboot: body.reboot,
          hooks,
        },
      ]);
      await appendAudit(trx, {
        actor: requestedBy,
        kind: 'run.requested',
        subject: id,
        detail: {
          agentId: agent.id,
          mode: body.mode,
          approval: body.approval,
          ...(vmid ? { container: vmid, containerOptions } : {}),
          securityOnly: body.securityOnly,
          ...(reboots ? { reboot: body.reboot } : {}),
          ...(hooks ? { hooks } : {}),
        },
        dedupeKey: `run.requested:${id}`,
      });
      return inserted;
    });
    try {
      await temporal.workflow.start(patchRun, {
        taskQueue: controlQueue,
        workflowId: id,
        args: [input],
        typedSearchAttributes: [
          { key: PatchHost, value: agent.hostname },
          { key: PatchPhase, value: 'planning' },
          ...(vmid !== undefined ? [{ key: PatchContainer, value: `${agent.id}/${vmid}` }] : []),
        ],
      });
    } catch (err) {
      // Nothing half-made: a run Temporal never accepted does not exist.
      const reason = err instanceof Error ? err.message : String(err);
      await db.transaction(async (trx) => {
        await deleteRun(trx, id);
        await appendAudit(trx, { actor: requestedBy, kind: 'run.start-failed', subject: id, detail: { reason } });
      });
      throw new ApiError(
        'unavailable',
        `could not start the run on Temporal: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    return toRun(row);
  }

  async function list(q: ListRunsQuery): Promise<{ runs: Run[]; next: string | null }> {
    let before: RunCursor | undefined;
    if (q.before) {
      before = await getRunCursor(db, q.before);
      if (!before) throw new ApiError('validation_failed', `query field before: unknown run ${q.before}`, 'before');
    }
    // One row more than the page tells whether there is a next page.
    const rows = await listRuns(db, {
      agentId: q.agentId,
      phase: q.phase,
      outcome: q.outcome,
      container: q.container,
      before,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit).map(toRun);
    return { runs: page, next: rows.length > q.limit ? page[page.length - 1].id : null };
  }

  async function get(id: string) {
    const row = await getRun(db, id);
    if (!row) throw notFound(`run ${id}`);
    const { packages, output, events } = await getRunRecord(db, id);
    const pkg = (kind: PackageKind) => packages.filter((p) => p.kind === kind).map(planPackageOf);
    return {
      ...toRun(row),
      plan: pkg('planned'),
      held: pkg('held'),
      changed: pkg('changed').map((p) => ({ name: p.name, arch: p.arch, from: p.current, to: p.candidate })),
      output: await Promise.all(
        output.map(async (o) => ({
          step: o.step,
          argv: o.argv,
          exitCode: o.exit_code,
          // Issue 17: streamed output is read from its chunks (whole and verified: GET …/output).
          ...(o.attempt === null
            ? { stdout: o.stdout, stderr: o.stderr }
            : {
                stdout: await storedText(db, id, o.step, o.attempt, 'stdout'),
                stderr: (await storedText(db, id, o.step, o.attempt, 'stderr')) + (o.stderr ? `\n${o.stderr}` : ''),
                attempt: o.attempt,
                delivered: o.delivered,
              }),
          durationMs: o.duration_ms,
          at: o.created_at.toISOString(),
        })),
      ),
      events: events.map((e) => ({ kind: e.kind, detail: e.detail, at: e.at.toISOString() })),
      /** While the run waits for its host: its place (1 = next) and the run that has the host. */
      queue: row.phase === 'queued' ? (events.find((e) => e.kind === 'queued')?.detail ?? null) : null,
    };
  }

  /** A run that exists and has not ended yet, else 404 or 409. */
  async function running(id: string): Promise<void> {
    const row = await getRunOutcome(db, id);
    if (!row) throw notFound(`run ${id}`);
    if (row.outcome) throw new ApiError('conflict', `run ${id} already ended: ${row.outcome}`);
  }

  /** Send a decision as a workflow Update, so a stale or late one is refused synchronously (409). */
  async function decide(id: string, send: () => Promise<RunStatus>): Promise<RunStatus> {
    await running(id);
    try {
      return await send();
    } catch (err) {
      // The workflow refused the decision (stale plan hash, no longer awaiting approval) ...
      if (err instanceof WorkflowUpdateFailedError) {
        // A signature that does not hold is the caller's credential failing: 403, not a conflict.
        const type = err.cause instanceof ApplicationFailure ? err.cause.type : undefined;
        const forbidden = type === DECISION_REFUSED.badSignature || type === DECISION_REFUSED.fourEyes;
        throw new ApiError(forbidden ? 'forbidden' : 'conflict', err.cause?.message ?? err.message);
      }
      // ... or it ended between the check above and the Update (the SDK maps gRPC NOT_FOUND to this).
      if (err instanceof WorkflowNotFoundError) throw new ApiError('conflict', `run ${id} is no longer running`);
      throw err;
    }
  }

  /**
   * Four-eyes, when the run has it (pinned from its agent or window at creation): whoever
   * requested the run may not approve it. A window's runs stand as requested by the window's
   * creator. Checked here, before anything reaches Temporal.
   */
  async function checkFourEyes(id: string, by: string): Promise<void> {
    const row = await getRun(db, id);
    if (!row?.four_eyes) return;
    if (row.requested_by === by)
      throw new ApiError('forbidden', `four-eyes: ${by} requested this run and cannot approve it`);
    if (row.window_id && (await getWindow(db, row.window_id))?.created_by === by)
      throw new ApiError(
        'forbidden',
        `four-eyes: ${by} created window ${row.window_id}, which requested this run, and cannot approve it`,
      );
  }

  /** The caller's signed statement, for this run and by the caller (the workflow verifies the signature). */
  async function approve(id: string, signed: Omit<SignedApproval, 'runId' | 'by'>, by: string): Promise<RunStatus> {
    await checkFourEyes(id, by);
    return decide(id, () =>
      temporal.workflow.getHandle(id).executeUpdate(approveUpdate, { args: [{ ...signed, runId: id, by }] }),
    );
  }

  const reject = (id: string, reason: string, by: string) =>
    decide(id, () => temporal.workflow.getHandle(id).executeUpdate(rejectUpdate, { args: [{ by, reason }] }));

  /** Cancel a run for `by`; a requester (`onlyOwn`) only a run they requested. */
  async function cancel(id: string, by: string, onlyOwn = false): Promise<void> {
    if (onlyOwn) {
      const row = await getRun(db, id);
      if (row && row.requested_by !== by)
        throw new ApiError(
          'forbidden',
          `${by} may cancel only runs they requested (${id} was requested by ${row.requested_by})`,
        );
    }
    await running(id);
    await temporal.workflow.getHandle(id).cancel();
    // The request, not the end: the run's own `run.outcome` entry records that it ended cancelled.
    await appendAudit(db, { actor: by, kind: 'run.cancel-requested', subject: id });
  }

  return { start, list, get, approve, reject, cancel };
}
export type RunsService = ReturnType<typeof runsService>;
