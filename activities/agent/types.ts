import type { ScriptExecution, ScriptMode } from '../../contract';

export interface HashVerifyInput {
  scriptName: string;
  /** The SHA-256 pinned by the control plane when the run was resolved. */
  sha256: string;
}

export interface HashVerifyResult {
  sha256: string;
  path: string;
  downloaded: boolean;
}

export interface ScriptExecuteInput {
  runId: string;
  sha256: string;
  mode: ScriptMode;
  exclusions: string[];
  heartbeatMs: number;
}

/** Activity signatures the workflow proxies (implemented by createAgentActivities). */
export declare function hashVerify(input: HashVerifyInput): Promise<HashVerifyResult>;
export declare function scriptExecute(input: ScriptExecuteInput): Promise<ScriptExecution>;
