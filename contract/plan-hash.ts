import { createHash } from 'node:crypto';
import type { PlanPackage } from './index';

/**
 * Fingerprint of a plan: what would change and why, not where it comes from. Two plans with the
 * same packages, versions, actions and security classification hash alike whatever their order;
 * a repo rename is not drift.
 *
 * The classification (issue 16) is part of a package's row only when there is one: a package
 * with `security` absent or null and no advisories hashes exactly as before issue 16, so the
 * hashes of stored plans (and of managers without advisory data, pacman) keep their meaning,
 * while a plan whose candidate stopped (or started) being a security fix, or names another
 * advisory, is a different plan. Advisories count by id and severity, in id order.
 */
export function planHash(packages: readonly PlanPackage[]): string {
  const rows = packages
    .map((p) => {
      const row: unknown[] = [p.name, p.arch, p.current, p.candidate, p.action];
      const advisories = [...(p.advisories ?? [])]
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .map((a) => [a.id, a.severity]);
      if ((p.security ?? null) !== null || advisories.length > 0) row.push(p.security ?? null, advisories);
      return row;
    })
    .sort((a, b) => (`${a[0] as string}\0${a[1] as string}` < `${b[0] as string}\0${b[1] as string}` ? -1 : 1));
  return sha256Hex(JSON.stringify(rows));
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
