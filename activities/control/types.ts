import type { Family, RunOutcome, RunPhase, ScriptExecution } from '../../contract';

export interface ResolvedRun {
  family: Family;
  scriptName: string;
  sha256: string;
  exclusions: string[];
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
  planHash: string | null;
  phase: RunPhase;
}

export interface RecordOutcomeInput {
  runId: string;
  outcome: RunOutcome;
  failureReason: string | null;
  execution: ScriptExecution | null;
  overran: boolean;
}

/** Activity signatures the workflow proxies (implemented by createControlActivities). */
export declare function resolveRun(input: { runId: string; agentId: string }): Promise<ResolvedRun>;
export declare function recordPlan(input: RecordPlanInput): Promise<void>;
export declare function recordDecision(input: RecordDecisionInput): Promise<void>;
export declare function recordEvent(input: { runId: string; kind: string; detail: unknown }): Promise<void>;
export declare function recordOutcome(input: RecordOutcomeInput): Promise<void>;

export interface CreateRunInput {
  runId: string;
  agentId: string;
  mode: 'dry-run' | 'apply';
  approval: 'required' | 'auto';
  requestedBy: string;
  windowId?: string;
  windowStart?: number;
}

/** Insert the runs' rows before their workflows start (the API does the same for manual runs). */
export declare function createRuns(input: CreateRunInput[]): Promise<void>;
/** A window's current configuration and resolved targets, read at each firing. */
export declare function loadWindowFiring(input: {
  windowId: string;
}): Promise<import('../../contract').WindowFiring | null>;
