/**
 * The messages a rollout handles (workflows/rollout.ts), declared once: the workflow sets the
 * handlers, the API sends them. Signals, not updates: the API records the request in the audit
 * trail and the workflow records the state change when it takes effect.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunOutcome } from '../contract';
import type { RolloutState } from '../db/rollouts';

/** Who asked; shown in the audit entry of the state change. */
export interface RolloutControl {
  by: string;
}

/** No new host starts; running hosts go on. */
export const pauseRolloutSignal = defineSignal<[RolloutControl]>('pause');
export const resumeRolloutSignal = defineSignal<[RolloutControl]>('resume');
/** Stop scheduling, cancel every run that has not started applying, wait for all, end `aborted`. */
export const abortRolloutSignal = defineSignal<[RolloutControl]>('abort');

export interface RolloutWaveSummary {
  wave: number;
  hosts: number;
  started: number;
  finished: number;
  failed: number;
}

/** The live summary of a rollout (query `summary`, and the workflow's result). */
export interface RolloutSummary {
  rolloutId: string;
  state: RolloutState;
  /** Why it ended or halted (or why it was refused). */
  reason: string | null;
  total: number;
  running: number;
  waves: RolloutWaveSummary[];
  budget: { allowed: number; spent: number; left: number };
  hosts: { agentId: string; wave: number; runId: string | null; outcome: RunOutcome | null }[];
}

export const rolloutSummaryQuery = defineQuery<RolloutSummary>('summary');
