/**
 * The baseline's activities: the minimal shape of a patch run in bare Temporal — dry-run and
 * apply on the host's queue, report on the control queue — with empty bodies and no database.
 * Types only here; the processes that host them implement them (sim-agents.ts, bare-control.ts).
 */
export declare function dryRun(): Promise<void>;
export declare function apply(): Promise<void>;
export declare function report(): Promise<void>;
