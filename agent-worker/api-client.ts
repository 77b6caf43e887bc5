import { z } from 'zod';
import { Agent, type AgentRegistration, type OutputChunk } from '../contract';
import { ScriptSignature } from '../runtime/script-signing';
import type { ContainerReportEntry } from '../contract/proxmox';

/** The API's error shape, as far as the agent reads it. */
const ErrorBody = z.object({ error: z.object({ code: z.string().optional(), message: z.string() }) }).partial();
const Registered = z.object({ agent: Agent, token: z.string().min(1) });
const Self = z.object({ agent: Agent });
const ScriptBody = z.object({
  // Signatures are checked by the activity against the agent's trusted keys; none is served as [].
  script: z.object({ content: z.string(), sha256: z.string(), signatures: z.array(ScriptSignature).default([]) }),
});

const HookBody = z.object({ hook: ScriptBody.shape.script });

/** An admin revoked this agent: its token is refused for ever. */
export class AgentRevokedError extends Error {
  constructor(
    readonly agentId: string,
    apiMessage: string,
  ) {
    super(
      `agent ${agentId} was revoked (${apiMessage}); it will not register again on its own: remove its state folder and enrol it anew if it should come back`,
    );
  }
}

interface Reply {
  status: number;
  json: unknown;
}

/** The agent's side of the HTTP API: register, read itself, download scripts. */
export class ApiClient {
  constructor(
    private readonly baseUrl: string,
    private token: string,
  ) {}

  useToken(token: string): void {
    this.token = token;
  }

  private async request(method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<Reply> {
    const res = await fetch(new URL(path, this.baseUrl), {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    try {
      return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
    } catch {
      return { status: res.status, json: { error: { message: text.slice(0, 200) } } };
    }
  }

  private static fail(what: string, r: Reply): never {
    const body = ErrorBody.safeParse(r.json);
    const error = body.success ? body.data.error : undefined;
    throw new Error(`${what}: HTTP ${r.status} ${error?.code ?? ''} ${error?.message ?? ''}`.trim());
  }

  /** Parse a success body; an answer that breaks the API's shape is an error, not a guess. */
  private static parse<T>(schema: z.ZodType<T>, what: string, r: Reply): T {
    const parsed = schema.safeParse(r.json);
    if (!parsed.success) throw new Error(`${what}: unexpected answer from the API: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  async register(reg: AgentRegistration): Promise<{ agent: Agent; token: string }> {
    const r = await this.request('POST', '/v1/agents', reg);
    if (r.status !== 201) ApiClient.fail('registration refused', r);
    return ApiClient.parse(Registered, 'registration', r);
  }

  /**
   * Read this agent's own record; null when the token is not known (e.g. another API's database).
   * Throws AgentRevokedError when an admin revoked this agent: it must not register again.
   */
  async self(agentId: string): Promise<Agent | null> {
    const r = await this.request('GET', `/v1/agents/${encodeURIComponent(agentId)}`);
    const error = ErrorBody.safeParse(r.json);
    if (r.status === 401 && error.success && error.data.error?.code === 'agent_revoked')
      throw new AgentRevokedError(agentId, error.data.error.message);
    if (r.status === 401 || r.status === 403 || r.status === 404) return null;
    if (r.status !== 200) ApiClient.fail('reading own identity failed', r);
    return ApiClient.parse(Self, 'reading own identity', r).agent;
  }

  /** A Proxmox VE node reports its containers (docs/proxmox.md); the API keeps what it says. */
  async reportContainers(agentId: string, containers: ContainerReportEntry[]): Promise<void> {
    const r = await this.request('PUT', `/v1/agents/${encodeURIComponent(agentId)}/containers`, { containers });
    if (r.status !== 200) ApiClient.fail('reporting containers failed', r);
  }

  /**
   * Post a chunk of a running script's output (issue 17). 'ok' also for a chunk the API already
   * had; 'refused' for a 4xx (the run ended, is not ours, or the key holds other bytes: asking
   * again would be refused again); a network error or 5xx throws, and the chunk is tried again.
   */
  async postOutput(runId: string, chunk: OutputChunk): Promise<'ok' | 'refused'> {
    const r = await this.request(
      'POST',
      `/v1/runs/${encodeURIComponent(runId)}/output`,
      { ...chunk, data: chunk.data.toString('base64') },
      10_000,
    );
    if (r.status === 200) return 'ok';
    if (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429) return 'refused';
    ApiClient.fail(`posting output of ${runId}`, r);
  }

  async script(name: string): Promise<{ content: string; sha256: string; signatures: ScriptSignature[] }> {
    const r = await this.request('GET', `/v1/scripts/${encodeURIComponent(name)}`);
    if (r.status !== 200) ApiClient.fail(`downloading script ${name} failed`, r);
    return ApiClient.parse(ScriptBody, `downloading script ${name}`, r).script;
  }

  /** Issue 12: a hook script, served and verified like a patch script (docs/reboot-and-hooks.md). */
  async hook(name: string): Promise<{ content: string; sha256: string; signatures: ScriptSignature[] }> {
    const r = await this.request('GET', `/v1/hooks/${encodeURIComponent(name)}`);
    if (r.status !== 200) ApiClient.fail(`downloading hook ${name} failed`, r);
    return ApiClient.parse(HookBody, `downloading hook ${name}`, r).hook;
  }
}
