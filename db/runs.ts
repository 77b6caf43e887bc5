/**
 * A patch run's record: `patch_runs` (one row a run) and what hangs off it — `run_packages`
 * (planned, held, changed), `run_output` (one row a script step), `run_events` (decisions and
 * ignored signals). The control activities write it as a run goes; the API reads it.
 */
import type {
  Advisory,
  ApprovalPolicy,
  ContainerOptions,
  ContainerReport,
  IgnoredDecision,
  PlanPackage,
  RunMode,
  RunOutcome,
  RunPhase,
  ScriptExecution,
  SnapshotMode,
  StreamDigest,
} from '../contract';
import { appendAudit } from './audit';
import type { SignedApproval } from '../contract/approval';
import type { RebootPolicy, RunHooks } from '../contract/rollout-policy';
import type { BaselineApproval } from '../contract/baselines';
import { recordFirstSeen } from './baselines';
import { jsonb, pgRow, type Db } from './index';

export interface RunRow {
  id: string; // the Temporal workflow id
  agent_id: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  phase: RunPhase;
  outcome: RunOutcome | null;
  failure_reason: string | null;
  requested_by: string;
  script_name: string | null;
  script_sha256: string | null;
  exclusions: string[];
  plan_hash: string | null;
  approved_by: string | null;
  approved_at: Date | null;
  /** The SignedApproval the run was approved with (issue 10). */
  approval_signature: SignedApproval | null;
  /** Issue 12: the patch baseline that approved the run and the rule that covered each package. */
  approved_by_baseline: BaselineApproval | null;
  rejected_by: string | null;
  reject_reason: string | null;
  exit_code: number | null;
  reboot_required: boolean | null;
  reboot_reason: string | null;
  window_id: string | null;
  window_start: Date | null;
  /** The Temporal run id of the workflow execution that claimed this row (claimRun); set once. */
  workflow_run_id: string | null;
  /** Pinned at creation from the agent's and the window's switch: the requester may not approve. */
  four_eyes: boolean;
  /** Issue 16: the run plans and applies only security fixes (`--security-only`). */
  security_only: boolean;
  overran: boolean;
  /** A Proxmox VE container of the agent's node the run targets (docs/proxmox.md); null: the host. */
  container: number | null;
  container_report: ContainerReport | null;
  /** The startIfStopped and snapshot in effect on a container run, and where each came from. */
  container_options: ContainerOptions | null;
  /** Issue 12: reboot after a successful apply; null: never (rows from before too). */
  reboot_policy: RebootPolicy | null;
  /** Issue 12: the pre/post hooks asked for; null: none. */
  hooks: RunHooks | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export type PackageKind = 'planned' | 'held' | 'changed';

export interface RunPackageRow {
  id: string; // bigint
  run_id: string;
  kind: PackageKind;
  name: string;
  arch: string;
  /** For `changed`: the version before. */
  current: string | null;
  /** For `changed`: the version after. */
  candidate: string | null;
  repo: string;
  action: PlanPackage['action'];
  /** Issue 16: whether the candidate is a security fix; null when unknown or recorded before. */
  security: boolean | null;
  /** Issue 16: the advisories the manager named; null in rows recorded before (not "none"). */
  advisories: Advisory[] | null;
}

/**
 * The plan-package fields of a plan entry or a stored row (the one mapping, both ways). The
 * classification is carried only when there is one: a row recorded before issue 16 (advisories
 * null) reads back as a package without it, exactly as it was planned.
 */
export const planPackageOf = (r: PlanPackage | RunPackageRow): PlanPackage => {
  const p: PlanPackage = {
    name: r.name,
    arch: r.arch,
    current: r.current,
    candidate: r.candidate,
    repo: r.repo,
    action: r.action,
  };
  if (r.advisories !== undefined && r.advisories !== null) {
    p.security = r.security ?? null;
    p.advisories = r.advisories;
  } else if (r.security !== undefined && r.security !== null) {
    p.security = r.security;
  }
  return p;
};

export type OutputStep = 'plan' | 'replan' | 'apply';

export interface RunOutputRow {
  id: string; // bigint
  run_id: string;
  step: OutputStep;
  argv: string[];
  exit_code: number;
  stdout: string;
  stderr: string;
  duration_ms: number;
  /** Issue 17: the attempt whose chunks are this step's output, and what the agent hashed; null before. */
  attempt: number | null;
  digests: { stdout: StreamDigest; stderr: StreamDigest } | null;
  delivered: boolean | null;
  created_at: Date;
}

export interface RunEventRow {
  id: string; // bigint
  run_id: string;
  kind: string;
  detail: unknown;
  at: Date;
}

export interface CreateRunInput {
  runId: string;
  agentId: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  requestedBy: string;
  windowId?: string;
  windowStart?: number;
  /** The container (VMID) a container run targets. */
  vmid?: number;
  /** A container run's options in effect and where each came from (run > window > container > off). */
  containerOptions?: ContainerOptions;
  /** Issue 16: plan and apply only security fixes. */
  securityOnly?: boolean;
  /** Issue 12: reboot policy and hooks (docs/reboot-and-hooks.md); absent: never, none. */
  reboot?: RebootPolicy;
  hooks?: RunHooks;
}

/** Issue 12: a step of the run beyond its scripts (hooks pinned and run, a reboot), kept as a run event. */
export interface RecordRunEventInput {
  runId: string;
  kind: 'hooks-pinned' | 'pre-hook' | 'post-hook' | 'reboot-scheduled' | 'rebooted' | 'reboot-timeout';
  detail: Record<string, unknown>;
}

export interface RecordPlanInput {
  runId: string;
  step: 'plan' | 'replan';
  execution: ScriptExecution;
  phase: RunPhase;
}

export interface RecordDecisionInput {
  runId: string;
  kind: 'approve' | 'reject';
  by: string;
  reason: string | null;
  /** The signed statement an approval was made with (issue 10); null for a rejection. */
  approval?: SignedApproval | null;
  /** Issue 12: an approval by a patch baseline (no signature: the baseline is the admin's standing approval). */
  baseline?: BaselineApproval | null;
  planHash: string | null;
  phase: RunPhase;
}

export interface RecordPhaseInput {
  runId: string;
  phase: RunPhase;
  /** Set when the run waits behind another run on its host: its place and who has the host. */
  queue?: { position: number; holder: string };
}

export interface RecordIgnoredInput {
  runId: string;
  ignored: IgnoredDecision[];
  dropped: number;
}

export interface RecordOutcomeInput {
  runId: string;
  outcome: RunOutcome;
  failureReason: string | null;
  execution: ScriptExecution | null;
  overran: boolean;
}

const runs = (db: Db) => db<RunRow>('patch_runs');
const packages = (db: Db) => db<RunPackageRow>('run_packages');
const outputs = (db: Db) => db<RunOutputRow>('run_output');
const events = (db: Db) => db<RunEventRow>('run_events');

// ---- writes ----

/**
 * The workflow execution a control activity acts for, taken from the activity's own Context
 * (Temporal's record of who scheduled it), never from the workflow's input: the run row with
 * id = workflowId, claimed by this execution's run id.
 */
export interface RunOwner {
  /** The workflow id, which is the run id. */
  runId: string;
  /** The Temporal run id of the execution that claimed the row. */
  workflowRunId: string;
  /**
   * The activity's id (a local activity's is its deterministic sequence number in the workflow):
   * with the workflow run id it keys the write's audit entry, so a retried write appends once.
   */
  activityId?: string;
}

/** Audit an owned write in its own transaction, once however often the activity is retried. */
function auditOwned(trx: Db, owner: RunOwner, actor: string, kind: string, detail: Record<string, unknown>) {
  return appendAudit(trx, {
    actor,
    kind,
    subject: owner.runId,
    detail,
    dedupeKey: `${kind}:${owner.runId}:${owner.workflowRunId}:${owner.activityId ?? ''}`,
  });
}

/** A write for a run whose row this execution has not claimed: it would have overwritten another run's. */
export class RunNotClaimedError extends Error {
  constructor(readonly owner: RunOwner) {
    super(
      `run ${owner.runId} is not claimed by workflow execution ${owner.workflowRunId}: ` +
        `no row written (the row is absent or belongs to another execution)`,
    );
  }
}

/** Lock the owner's row for this transaction; throws when this execution does not own it. */
async function lockOwned(trx: Db, owner: RunOwner): Promise<void> {
  const row = await runs(trx).where({ id: owner.runId, workflow_run_id: owner.workflowRunId }).forUpdate().first('id');
  if (!row) throw new RunNotClaimedError(owner);
}

/** What a patchRun's input repeats of its row; the claim checks each against the row. */
export interface ClaimRunInput {
  runId: string;
  agentId: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  windowId: string | null;
  /** The window start (epoch ms) of a window run. */
  windowStart: number | null;
  /** The container a container run targets; null or absent for a host run. */
  container?: number | null;
  /** A container run's options (the row's container_options must say the same). */
  startIfStopped?: boolean;
  snapshot?: SnapshotMode;
  /** Issue 16; absent in inputs written before it (then false). */
  securityOnly?: boolean;
  /** Issue 12; absent: never / none (the row must say so too). */
  reboot?: RebootPolicy;
  hooks?: RunHooks;
}

export type ClaimResult = { claimed: true } | { claimed: false; reason: string };

/**
 * A workflow execution takes its run row, once. Refused unless the row with id = the workflow
 * id exists, says what the input says (agent, mode, approval, window), the input names the row
 * itself, and no other execution has claimed it (a retried claim by the same execution passes).
 * One conditional UPDATE, so two executions racing for a row cannot both win.
 */
export async function claimRun(db: Db, owner: RunOwner, input: ClaimRunInput): Promise<ClaimResult> {
  if (input.runId !== owner.runId)
    return { claimed: false, reason: `input runId ${input.runId} is not the workflow id ${owner.runId}` };
  const windowStart = input.windowStart === null ? null : new Date(input.windowStart);
  const updated = await runs(db)
    .where({
      id: owner.runId,
      agent_id: input.agentId,
      mode: input.mode,
      approval: input.approval,
      security_only: input.securityOnly === true,
    })
    .whereRaw('window_id is not distinct from ?', [input.windowId])
    .whereRaw('window_start is not distinct from ?', [windowStart])
    .whereRaw('container is not distinct from ?', [input.container ?? null])
    // A container run may not start or snapshot a container its row did not say to (null: before they were recorded, off).
    .whereRaw(`coalesce((container_options->>'startIfStopped')::boolean, false) = ?`, [input.startIfStopped ?? false])
    .whereRaw(`coalesce(container_options->>'snapshot', 'none') = ?`, [input.snapshot ?? 'none'])
    // Issue 12: a workflow started around the API can add neither a reboot nor a hook.
    .whereRaw(`coalesce(reboot_policy, 'never') = ?`, [input.reboot ?? 'never'])
    .whereRaw('hooks is not distinct from ?::jsonb', [hooksJson(input.hooks)])
    .whereRaw('(workflow_run_id is null or workflow_run_id = ?)', [owner.workflowRunId])
    .whereNull('outcome')
    .update({ workflow_run_id: owner.workflowRunId, updated_at: db.fn.now() })
    .returning('id');
  if (updated.length === 1) return { claimed: true };
  // Refused: say why (read after the fact; nothing was written).
  const row = await runs(db).where({ id: owner.runId }).first();
  if (!row) return { claimed: false, reason: `no run row ${owner.runId}: not created by the API or a window` };
  if (row.workflow_run_id !== null && row.workflow_run_id !== owner.workflowRunId)
    return { claimed: false, reason: `run ${owner.runId} belongs to workflow execution ${row.workflow_run_id}` };
  if (row.outcome !== null) return { claimed: false, reason: `run ${owner.runId} has ended (${row.outcome})` };
  const differs = [
    row.agent_id !== input.agentId && `agentId (row ${row.agent_id}, input ${input.agentId})`,
    row.mode !== input.mode && `mode (row ${row.mode}, input ${input.mode})`,
    row.approval !== input.approval && `approval (row ${row.approval}, input ${input.approval})`,
    row.window_id !== input.windowId && `window (row ${row.window_id}, input ${input.windowId})`,
    (row.window_start?.getTime() ?? null) !== input.windowStart && `window start`,
    row.container !== (input.container ?? null) && `container (row ${row.container}, input ${input.container ?? null})`,
    (row.container_options?.startIfStopped ?? false) !== (input.startIfStopped ?? false) && `startIfStopped`,
    (row.container_options?.snapshot ?? 'none') !== (input.snapshot ?? 'none') && `snapshot`,
    row.security_only !== (input.securityOnly === true) &&
      `securityOnly (row ${row.security_only}, input ${input.securityOnly === true})`,
    (row.reboot_policy ?? 'never') !== (input.reboot ?? 'never') &&
      `reboot (row ${row.reboot_policy ?? 'never'}, input ${input.reboot ?? 'never'})`,
    hooksJson(row.hooks ?? undefined) !== hooksJson(input.hooks) && `hooks`,
  ].filter(Boolean);
  return { claimed: false, reason: `input differs from run row ${owner.runId}: ${differs.join(', ') || 'unknown'}` };
}

/**
 * A run's hooks as stored and compared: JSON with the specs' keys in one order (jsonb equality
 * ignores key order anyway), null when there are none. An empty `{}` is none.
 */
function hooksJson(hooks: RunHooks | undefined | null): string | null {
  if (!hooks || (!hooks.pre && !hooks.post)) return null;
  const spec = (h: RunHooks['pre']) =>
    h ? { script: h.script, timeoutSeconds: h.timeoutSeconds, onFailure: h.onFailure } : undefined;
  return JSON.stringify({ pre: spec(hooks.pre), post: spec(hooks.post) });
}

/**
 * Who may not approve a four-eyes run (pinned on the row at creation): its requester and, for a
 * window's or a rollout's run, the window's or rollout's creator. Empty when the run has no four-eyes rule.
 */
export async function fourEyesExcluded(db: Db, runId: string): Promise<string[]> {
  const { rows } = await db.raw<{
    rows: { four_eyes: boolean; requested_by: string; created_by: string | null; rollout_by: string | null }[];
  }>(
    `select r.four_eyes, r.requested_by, w.created_by, ro.created_by as rollout_by
       from patch_runs r left join maintenance_windows w on w.id = r.window_id
       left join rollouts ro on 'rollout:' || ro.id = r.requested_by
      where r.id = ?`,
    [runId],
  );
  const row = rows[0];
  if (!row?.four_eyes) return [];
  // A rollout's runs stand as requested by `rollout:<id>`; its creator is who asked for them.
  return [row.requested_by, ...[row.created_by, row.rollout_by].filter((x): x is string => x !== null)];
}

/** The one place patch_runs rows are born, for API-started and window-started runs alike. */
export async function insertRunRows(db: Db, inputs: readonly CreateRunInput[]): Promise<RunRow[]> {
  if (inputs.length === 0) return [];
  return runs(db)
    .insert(
      inputs.map((input) => ({
        id: input.runId,
        agent_id: input.agentId,
        mode: input.mode,
        approval: input.approval,
        phase: 'pending' as const,
        requested_by: input.requestedBy,
        window_id: input.windowId ?? null,
        window_start: input.windowStart ? new Date(input.windowStart) : null,
        container: input.vmid ?? null,
        container_options: input.containerOptions
          ? (jsonb(db, input.containerOptions) as unknown as ContainerOptions)
          : null,
        security_only: input.securityOnly === true,
        reboot_policy: input.reboot && input.reboot !== 'never' ? input.reboot : null,
        hooks: db.raw('?::jsonb', [hooksJson(input.hooks)]) as unknown as RunHooks,
        // Pinned here, in the insert, so a later change to the agent or window leaves this run be.
        four_eyes: db.raw(
          `coalesce((select four_eyes from agents where id = ?), false)
           or coalesce((select four_eyes from maintenance_windows where id = ?), false)`,
          [input.agentId, input.windowId ?? null],
        ) as unknown as boolean,
      })),
    )
    .onConflict('id')
    .merge(['updated_at']) // idempotent under activity retries
    .returning('*');
}

/** Remove a run that never started (Temporal refused it), with everything hanging off it. */
export async function deleteRun(db: Db, id: string): Promise<void> {
  await runs(db).where({ id }).delete();
}

/** The script a run executes, pinned by hash, and the exclusions it passes. */
export async function recordScript(
  db: Db,
  owner: RunOwner,
  script: { scriptName: string; sha256: string; exclusions: string[] },
): Promise<void> {
  const n = await runs(db)
    .where({ id: owner.runId, workflow_run_id: owner.workflowRunId })
    .update({
      script_name: script.scriptName,
      script_sha256: script.sha256,
      exclusions: jsonb(db, script.exclusions),
      updated_at: db.fn.now(),
    });
  if (n !== 1) throw new RunNotClaimedError(owner);
}

async function insertOutput(db: Db, runId: string, step: OutputStep, e: ScriptExecution): Promise<void> {
  await outputs(db).insert(
    pgRow({
      run_id: runId,
      step,
      argv: jsonb(db, e.argv),
      exit_code: e.exitCode,
      // Issue 17: a streamed execution carries no text (its chunks are in run_output_chunks).
      stdout: e.stdout,
      stderr: e.stderr,
      duration_ms: e.durationMs,
      ...(e.output
        ? {
            attempt: e.output.attempt,
            digests: jsonb(db, { stdout: e.output.stdout, stderr: e.output.stderr }),
            delivered: e.output.delivered,
          }
        : {}),
    }),
  );
}

export async function recordPlan(db: Db, owner: RunOwner, input: Omit<RecordPlanInput, 'runId'>): Promise<void> {
  const { execution: e } = input;
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    // Idempotent under activity retries: a step's rows are replaced, not appended.
    await outputs(trx).where({ run_id: owner.runId, step: input.step }).delete();
    await insertOutput(trx, owner.runId, input.step, e);
    if (input.step === 'plan') {
      await packages(trx).where({ run_id: owner.runId }).whereIn('kind', ['planned', 'held']).delete();
      const rows = [
        ...(e.result?.packages ?? []).map((p) => ({ ...p, kind: 'planned' as const })),
        ...(e.result?.held ?? []).map((p) => ({ ...p, kind: 'held' as const })),
      ].map(({ kind, ...p }) => {
        const { advisories, security, ...fields } = planPackageOf(p);
        return {
          ...pgRow({ run_id: owner.runId, kind, ...fields }),
          security: security ?? null,
          advisories: advisories === undefined ? null : jsonb(trx, advisories),
        };
      });
      if (rows.length > 0) await packages(trx).insert(rows);
      // Baselines count "N days" from the first plan that offered a candidate (issue 12).
      await recordFirstSeen(trx, owner.runId, e.result?.packages ?? []);
      // The host's reboot state as the plan found it (the review desk shows it while the run
      // waits); the outcome overwrites it with the state after the run.
      await runs(trx)
        .where({ id: owner.runId })
        .update(
          pgRow({
            plan_hash: e.planHash,
            phase: input.phase,
            reboot_required: e.result?.reboot_required ?? null,
            reboot_reason: e.result?.reboot_reason ?? null,
            updated_at: trx.fn.now(),
          }),
        );
    } else {
      await runs(trx).where({ id: owner.runId }).update({ phase: input.phase, updated_at: trx.fn.now() });
    }
    await auditOwned(trx, owner, `workflow:${owner.runId}`, 'run.plan-recorded', {
      step: input.step,
      planHash: e.planHash,
      exitCode: e.exitCode,
      packages: (e.result?.packages ?? []).length,
      held: (e.result?.held ?? []).length,
    });
  });
}

export async function recordDecision(
  db: Db,
  owner: RunOwner,
  input: Omit<RecordDecisionInput, 'runId'>,
): Promise<void> {
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    const decision =
      input.kind === 'approve'
        ? {
            approved_by: input.by,
            approved_at: trx.fn.now(),
            approval_signature: input.approval ? jsonb(trx, input.approval) : null,
            approved_by_baseline: input.baseline ? jsonb(trx, input.baseline) : null,
          }
        : { rejected_by: input.by, reject_reason: input.reason };
    await runs(trx)
      .where({ id: owner.runId })
      .update(pgRow({ ...decision, phase: input.phase, updated_at: trx.fn.now() }));
    // Idempotent: a local activity runs again when its workflow task is retried.
    const kind = input.kind === 'approve' ? 'approved' : 'rejected';
    await events(trx).where({ run_id: owner.runId, kind }).delete();
    await events(trx).insert({
      run_id: owner.runId,
      kind,
      detail: jsonb(trx, {
        by: input.by,
        reason: input.reason,
        planHash: input.planHash,
        ...(input.approval ? { keyId: input.approval.keyId, signedAt: input.approval.at } : {}),
        ...(input.baseline
          ? { baseline: input.baseline.baseline, baselineId: input.baseline.baselineId, rules: input.baseline.packages }
          : {}),
      }),
    });
    await auditOwned(trx, owner, input.by, input.kind === 'approve' ? 'run.approved' : 'run.rejected', {
      planHash: input.planHash,
      reason: input.reason,
      // The whole signed statement: anyone with the approver's public key can check it from the trail.
      ...(input.approval ? { approval: input.approval } : {}),
      ...(input.baseline ? { baseline: input.baseline } : {}),
    });
  });
}

/**
 * A phase change between the run's other records: `queued` behind another run on the same host
 * (its place kept as the run's one `queued` event), and back when the host is its own.
 */
export async function recordPhase(db: Db, owner: RunOwner, input: Omit<RecordPhaseInput, 'runId'>): Promise<void> {
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    await runs(trx).where({ id: owner.runId }).update({ phase: input.phase, updated_at: trx.fn.now() });
    if (input.queue) {
      await events(trx).where({ run_id: owner.runId, kind: 'queued' }).delete();
      await events(trx).insert({ run_id: owner.runId, kind: 'queued', detail: jsonb(trx, input.queue) });
    }
  });
}

/**
 * Issue 12: a hook's or a reboot's record on the run, with its audit entry, in one transaction.
 * Idempotent: a local activity runs again when its workflow task is retried, so the run's event
 * of that kind is replaced, and the audit entry is keyed by the activity.
 */
export async function recordRunEvent(
  db: Db,
  owner: RunOwner,
  input: Omit<RecordRunEventInput, 'runId'>,
): Promise<void> {
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    await events(trx).where({ run_id: owner.runId, kind: input.kind }).delete();
    await events(trx).insert({ run_id: owner.runId, kind: input.kind, detail: jsonb(trx, input.detail as unknown) });
    // The trail says what happened; a hook's output stays on the run.
    const { stdout: _o, stderr: _e, ...said } = input.detail;
    await auditOwned(trx, owner, `workflow:${owner.runId}`, `run.${input.kind}`, said);
  });
}

const IGNORED_KINDS = ['ignored-approve', 'ignored-reject', 'ignored-decisions-dropped'];

/**
 * The run's refused signals, replaced as a whole (idempotent: a local activity runs again when
 * its workflow task is retried, which a burst of signals causes): one row each, plus one
 * counting those not kept.
 */
export async function recordIgnoredDecisions(
  db: Db,
  owner: RunOwner,
  input: Omit<RecordIgnoredInput, 'runId'>,
): Promise<void> {
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    await events(trx).where({ run_id: owner.runId }).whereIn('kind', IGNORED_KINDS).delete();
    const rows = input.ignored.map((detail) => ({
      run_id: owner.runId,
      kind: `ignored-${detail.kind}`,
      detail: jsonb(trx, detail as unknown),
    }));
    if (input.dropped > 0) {
      const detail: unknown = { dropped: input.dropped, kept: input.ignored.length };
      rows.push({ run_id: owner.runId, kind: 'ignored-decisions-dropped', detail: jsonb(trx, detail) });
    }
    if (rows.length > 0) await events(trx).insert(rows);
  });
}

export async function recordOutcome(db: Db, owner: RunOwner, input: Omit<RecordOutcomeInput, 'runId'>): Promise<void> {
  const e = input.execution;
  await db.transaction(async (trx) => {
    await lockOwned(trx, owner);
    if (e && e.mode === 'apply') {
      await outputs(trx).where({ run_id: owner.runId, step: 'apply' }).delete();
      await insertOutput(trx, owner.runId, 'apply', e);
      await packages(trx).where({ run_id: owner.runId, kind: 'changed' }).delete();
      const changed = (e.result?.changed ?? []).map((c) => ({
        run_id: owner.runId,
        kind: 'changed' as const,
        name: c.name,
        arch: c.arch,
        current: c.from,
        candidate: c.to,
        repo: '',
        action: c.from === null ? ('install' as const) : c.to === null ? ('remove' as const) : ('upgrade' as const),
      }));
      if (changed.length > 0) await packages(trx).insert(changed.map(pgRow));
    } else if (e) {
      // a dry-run run, or a failed plan: the plan output is the report
      const stored = await outputs(trx).where({ run_id: owner.runId, step: 'plan' }).first('id');
      if (!stored) await insertOutput(trx, owner.runId, 'plan', e);
    }
    await runs(trx)
      .where({ id: owner.runId })
      .update(
        pgRow({
          phase: 'done' as const,
          outcome: input.outcome,
          failure_reason: input.failureReason,
          exit_code: e ? e.exitCode : null,
          // No result (rejected, expired, cancelled…): the reboot state the plan found stays.
          ...(e?.result ? { reboot_required: e.result.reboot_required, reboot_reason: e.result.reboot_reason } : {}),
          overran: input.overran,
          ...(e?.container ? { container_report: jsonb(trx, e.container) } : {}),
          finished_at: trx.fn.now(),
          updated_at: trx.fn.now(),
        }),
      );
    await auditOwned(trx, owner, `workflow:${owner.runId}`, 'run.outcome', {
      outcome: input.outcome,
      failureReason: input.failureReason,
      exitCode: e ? e.exitCode : null,
      changed: e?.mode === 'apply' ? (e.result?.changed ?? []).length : null,
      overran: input.overran,
    });
  });
}

// ---- reads ----

export function getRun(db: Db, id: string): Promise<RunRow | undefined> {
  return runs(db).where({ id }).first();
}

/** Whether a run exists and how it ended (null while it runs). */
export function getRunOutcome(db: Db, id: string): Promise<Pick<RunRow, 'id' | 'outcome'> | undefined> {
  return runs(db).where({ id }).first('id', 'outcome');
}

/** Where a page of runs starts: runs created before this one. */
export type RunCursor = Pick<RunRow, 'id' | 'created_at'>;

export interface RunFilter {
  agentId?: string;
  phase?: RunPhase;
  outcome?: RunOutcome;
  container?: number;
  /** Runs created before this run (the previous page's last), newest first. */
  before?: RunCursor;
  limit: number;
}

/** The cursor `listRuns` pages from: undefined when there is no such run. */
export function getRunCursor(db: Db, id: string): Promise<RunCursor | undefined> {
  return runs(db).where({ id }).first('id', 'created_at');
}

/** Runs newest first (created_at, then id, so a page boundary is never ambiguous). */
export function listRuns(db: Db, filter: RunFilter): Promise<RunRow[]> {
  const query = runs(db)
    .select('*')
    .orderBy([
      { column: 'created_at', order: 'desc' },
      { column: 'id', order: 'desc' },
    ])
    .limit(filter.limit);
  if (filter.agentId) query.where({ agent_id: filter.agentId });
  if (filter.container !== undefined) query.where({ container: filter.container });
  if (filter.phase) query.where({ phase: filter.phase });
  if (filter.outcome) query.where({ outcome: filter.outcome });
  // Row comparison: earlier created_at, or the same one and a smaller id.
  if (filter.before) query.whereRaw('(created_at, id) < (?, ?)', [filter.before.created_at, filter.before.id]);
  return query;
}

/** Everything recorded under a run: package rows, script output and events, in order. */
export async function getRunRecord(
  db: Db,
  id: string,
): Promise<{ packages: RunPackageRow[]; output: RunOutputRow[]; events: RunEventRow[] }> {
  const [pkgs, output, evts] = await Promise.all([
    packages(db).where({ run_id: id }).orderBy(['kind', 'name', 'arch']),
    outputs(db).where({ run_id: id }).orderBy('id'),
    events(db).where({ run_id: id }).orderBy('id'),
  ]);
  return { packages: pkgs, output, events: evts };
}

export type WindowRunRow = Pick<
  RunRow,
  | 'id'
  | 'agent_id'
  | 'mode'
  | 'phase'
  | 'outcome'
  | 'failure_reason'
  | 'overran'
  | 'window_start'
  | 'created_at'
  | 'finished_at'
>;

/** A window's most recent runs, newest first. */
export function listWindowRuns(db: Db, windowId: string, limit: number): Promise<WindowRunRow[]> {
  return runs(db)
    .where({ window_id: windowId })
    .orderBy('created_at', 'desc')
    .limit(limit)
    .select(
      'id',
      'agent_id',
      'mode',
      'phase',
      'outcome',
      'failure_reason',
      'overran',
      'window_start',
      'created_at',
      'finished_at',
    );
}

/** The runs of an agent that have not ended (an agent's revocation ends each of them). */
export async function openRunIds(db: Db, agentId?: string): Promise<string[]> {
  const rows = await runs(db)
    .where(agentId === undefined ? {} : { agent_id: agentId })
    .whereNull('outcome')
    .orderBy('created_at')
    .select('id');
  return rows.map((r) => r.id);
}
