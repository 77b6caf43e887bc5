import { createHash } from 'node:crypto';
import type { PlanPackage } from './index';

/**
 * Fingerprint of a plan: what would change, not where it comes from. Two plans with the same
 * packages, versions and actions hash alike whatever their order; a repo rename is not drift.
 */
export function planHash(packages: readonly PlanPackage[]): string {
  const rows = packages
    .map((p) => [p.name, p.arch, p.current, p.candidate, p.action] as const)
    .sort((a, b) => (a[0] + '\0' + a[1] < b[0] + '\0' + b[1] ? -1 : 1));
  return sha256Hex(JSON.stringify(rows));
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
