/**
 * The gate's metrics: every agent call by WorkflowService method, what became of it and its gRPC
 * status code, and the calls open upstream now (long polls mostly). Never the agent id (one
 * series per host would be the fleet's size; the gate's log names the agent of each refusal).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** What became of an agent's call: forwarded (answered by Temporal), upstream-error, refused, cut (a revoked agent's open call), unavailable (tokens could not be checked). */
export type CallResult = 'forwarded' | 'upstream-error' | 'refused' | 'cut' | 'unavailable';

export function gateMetrics(
  registry: Registry,
  openCalls: () => number,
): (method: string, result: CallResult, code: string) => void {
  const calls = new Counter({
    name: 'patchnanny_gate_calls_total',
    help: 'Agent calls through the gate by WorkflowService method, result (forwarded, upstream-error, refused, cut, unavailable) and gRPC code',
    labelNames: ['method', 'result', 'code'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'patchnanny_gate_open_calls',
    help: 'Agent calls in flight upstream now (mostly activity long polls: about one per connected agent)',
    registers: [registry],
    collect() {
      this.set(openCalls());
    },
  });
  return (method, result, code) => calls.inc({ method, result, code });
}
