/**
 * Who is calling: the agent token (`authorization: Bearer pna_…`, the one the API issued at
 * registration) is hashed and looked up in `agents`. Only `accepted` agents pass. Lookups are
 * cached for at most `cacheMs`, and the caller re-checks agents with open calls on an interval
 * (`recheck`), so a revoked agent's long polls are cut within about a second.
 */
import { agentByTokenHash, agentsByTokenHashes, type AgentStatus } from '../db/agents';
import type { Db } from '../db';
import { sha256Hex } from '../contract/plan-hash';

export type AuthResult =
  | { ok: true; agentId: string; tokenHash: string }
  | { ok: false; code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED'; why: string; agentId?: string };

interface Cached {
  agent: { id: string; status: AgentStatus } | undefined;
  at: number;
}

export function verdict(tokenHash: string, agent: Cached['agent']): AuthResult {
  if (!agent) return { ok: false, code: 'UNAUTHENTICATED', why: 'unknown agent token' };
  if (agent.status === 'accepted') return { ok: true, agentId: agent.id, tokenHash };
  if (agent.status === 'pending')
    return { ok: false, code: 'PERMISSION_DENIED', why: `agent ${agent.id} is pending acceptance`, agentId: agent.id };
  return { ok: false, code: 'UNAUTHENTICATED', why: `agent ${agent.id} is revoked`, agentId: agent.id };
}

export class AgentAuth {
  private cache = new Map<string, Cached>();
  /** One lookup per token hash in flight: a fleet reconnecting at once asks once per agent. */
  private inflight = new Map<string, Promise<Cached['agent']>>();

  constructor(
    private readonly db: Db,
    private readonly cacheMs = 1000,
  ) {}

  /** The agent the `authorization` header names, if it may call the gate at all. */
  async authenticate(authorization: string | undefined): Promise<AuthResult> {
    const m = authorization ? /^Bearer (\S+)$/i.exec(authorization.trim()) : null;
    if (!m) return { ok: false, code: 'UNAUTHENTICATED', why: 'no agent token (authorization: Bearer <token>)' };
    const tokenHash = sha256Hex(m[1]);
    const hit = this.cache.get(tokenHash);
    if (hit && Date.now() - hit.at <= this.cacheMs) return verdict(tokenHash, hit.agent);
    let pending = this.inflight.get(tokenHash);
    if (!pending) {
      pending = agentByTokenHash(this.db, tokenHash).finally(() => this.inflight.delete(tokenHash));
      this.inflight.set(tokenHash, pending);
    }
    const agent = await pending;
    this.remember(tokenHash, agent);
    return verdict(tokenHash, agent);
  }

  /** Look these token hashes up again now (one query); their verdicts, by hash. */
  async recheck(tokenHashes: string[]): Promise<Map<string, AuthResult>> {
    const rows = tokenHashes.length ? await agentsByTokenHashes(this.db, tokenHashes) : [];
    const byHash = new Map(rows.map((r) => [r.token_hash, { id: r.id, status: r.status }]));
    const out = new Map<string, AuthResult>();
    for (const h of tokenHashes) {
      this.remember(h, byHash.get(h));
      out.set(h, verdict(h, byHash.get(h)));
    }
    return out;
  }

  private remember(tokenHash: string, agent: Cached['agent']): void {
    // Bounded: a stream of random tokens must not grow the cache; stale entries go first.
    if (this.cache.size > 50_000) {
      const now = Date.now();
      for (const [k, v] of this.cache) if (now - v.at > this.cacheMs) this.cache.delete(k);
      if (this.cache.size > 50_000) this.cache.clear();
    }
    this.cache.set(tokenHash, { agent: agent && { id: agent.id, status: agent.status }, at: Date.now() });
  }
}
