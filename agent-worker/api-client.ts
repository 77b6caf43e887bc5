import { Agent, type AgentRegistration } from '../contract';

/** The agent's side of the HTTP API: register, read itself, download scripts. */
export class ApiClient {
  constructor(
    private readonly baseUrl: string,
    private token: string,
  ) {}

  useToken(token: string): void {
    this.token = token;
  }

  private async request(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(new URL(path, this.baseUrl), {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = { error: { message: text.slice(0, 200) } };
    }
    return { status: res.status, json };
  }

  private static fail(what: string, r: { status: number; json: any }): never {
    throw new Error(`${what}: HTTP ${r.status} ${r.json?.error?.code ?? ''} ${r.json?.error?.message ?? ''}`.trim());
  }

  async register(reg: AgentRegistration): Promise<{ agent: Agent; token: string }> {
    const r = await this.request('POST', '/v1/agents', reg);
    if (r.status !== 201) ApiClient.fail('registration refused', r);
    return { agent: Agent.parse(r.json.agent), token: String(r.json.token) };
  }

  /** Read this agent's own record; null when the token is no longer valid. */
  async self(agentId: string): Promise<Agent | null> {
    const r = await this.request('GET', `/v1/agents/${encodeURIComponent(agentId)}`);
    if (r.status === 401 || r.status === 403 || r.status === 404) return null;
    if (r.status !== 200) ApiClient.fail('reading own identity failed', r);
    return Agent.parse(r.json.agent);
  }

  async script(name: string): Promise<{ content: string; sha256: string }> {
    const r = await this.request('GET', `/v1/scripts/${encodeURIComponent(name)}`);
    if (r.status !== 200) ApiClient.fail(`downloading script ${name} failed`, r);
    return { content: String(r.json.script.content), sha256: String(r.json.script.sha256) };
  }
}
