/**
 * The review desk (issue 17): plain DOM, no framework. Everything shown comes from the /v1 API
 * with the token the person signs in with (kept in this tab's session storage, never in a URL);
 * approvals are signed here with the approver's Ed25519 key through WebCrypto, the key kept in
 * memory only. Data is written with textContent, never as HTML.
 *
 * What you approve is what you saw: the list of waiting plans is not redrawn under the cursor.
 * When the server's list changes, a notice says so and the person redraws it; a decision sent
 * from a stale list is refused by the API (each run checks its own plan) and the refusal is shown.
 */

// ---- what the page reads of the API (api/reviews/schema.ts, api/compliance/schema.ts) ----

interface Pkg {
  name: string;
  arch: string;
  current: string | null;
  candidate: string | null;
  repo: string;
  action: string;
  security?: boolean;
}
interface ReviewRun {
  id: string;
  agentId: string;
  hostname: string;
  container: number | null;
  requestedBy: string;
  exclusions: string[];
  held: Pkg[];
  rebootRequired: boolean | null;
  rebootReason: string | null;
  waitingSince: string;
}
interface ReviewGroup {
  planHash: string;
  plan: Pkg[];
  securityPackages: number;
  hosts: number;
  runs: ReviewRun[];
  held: (Pkg & { runs: number })[];
  rebootRequired: number;
  oldestWaitingSince: string;
}
interface Compliance {
  state: string;
  lastSeenAt: string | null;
  lastSuccessfulApplyAt: string | null;
  pendingUpgrades: number | null;
  pendingSecurity: number | null;
  held: string[];
  excluded: string[];
  rebootRequired: boolean | null;
  rebootRequiredSince: string | null;
  lastRun: { id: string; outcome: string; failureReason: string | null; finishedAt: string | null } | null;
}
interface AgentRow {
  id: string;
  hostname: string;
  status: string;
  compliance: Compliance;
}
interface Summary {
  hosts: number;
  upToDate: number;
  pending: number;
  failing: number;
  unreachable: number;
  unknown: number;
  pendingReboot: number;
}
interface Run {
  id: string;
  mode: string;
  phase: string;
  outcome: string | null;
  requestedBy: string;
  approvedBy: string | null;
  rejectedBy: string | null;
  failureReason: string | null;
  rejectReason: string | null;
  createdAt: string;
  finishedAt: string | null;
}
interface Decision {
  decided: { runId: string }[];
  refused: { runId: string; message: string }[];
  notIncluded: string[];
}

const PHASES = ['pending', 'queued', 'planning', 'awaiting-approval', 'applying', 'reporting', 'done'];
const OUTCOMES = [
  'completed',
  'failed',
  'rejected',
  'expired',
  'plan-drift',
  'cancelled',
  'agent-unreachable',
  'agent-revoked',
  'skipped-unapproved',
  'skipped-window-closed',
];
const TOKEN_KEY = 'patchnanny.token';
const REFRESH_MS = 3000;

// ---- small helpers ----

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null) e.append(c);
  return e;
}

const badge = (text: string, kind = '') => el('span', { class: `badge ${kind}` }, text);
// One formatter for every date: Date#toLocaleString builds one a call, which made 1,000 waiting runs slow to draw.
const DATE_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const when = (iso: string | null) => (iso ? DATE_FORMAT.format(new Date(iso)) : '—');

class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let token: string | null = sessionStorage.getItem(TOKEN_KEY);

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${token ?? ''}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
  if (!res.ok) throw new ApiFailure(res.status, json?.error?.message ?? `${res.status} ${res.statusText}`);
  return json as T;
}

function say(text: string, error = false): void {
  const m = $('message');
  m.textContent = text;
  m.className = error ? 'error' : '';
}

// ---- signing (contract/approval.ts: the same statement, byte for byte) ----

const APPROVAL_CONTEXT = 'patchnanny-approval-v1';
let signer: { key: CryptoKey; keyId: string; by: string } | null = null;

function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function signStatement(runId: string, planHash: string) {
  if (!signer) throw new Error('load your approval key first (Approval key, above)');
  const at = new Date().toISOString();
  const json = JSON.stringify({ runId, planHash, by: signer.by, at });
  const bytes = new TextEncoder().encode(`${APPROVAL_CONTEXT}\n${json}`);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, signer.key, bytes));
  return { runId, at, keyId: signer.keyId, signature: toBase64Url(signature) };
}

/** A key file of `patchnanny keygen`: the private key goes into WebCrypto, non-extractable. */
async function loadKey(file: File): Promise<void> {
  const parsed = JSON.parse(await file.text()) as { keyId?: unknown; publicKey?: unknown; privateKey?: unknown };
  if (typeof parsed.privateKey !== 'string' || typeof parsed.publicKey !== 'string' || typeof parsed.keyId !== 'string')
    throw new Error(`${file.name} is not a patchnanny key file`);
  const key = await crypto.subtle.importKey(
    'jwk',
    { kty: 'OKP', crv: 'Ed25519', d: parsed.privateKey, x: parsed.publicKey },
    { name: 'Ed25519' },
    false,
    ['sign'],
  );
  // Whose key it is says who signs: the API approves as the caller, so they must be the same.
  const { keys } = await api<{ keys: { id: string; owner: string; revokedAt: string | null }[] }>('GET', '/v1/keys');
  const registered = keys.find((k) => k.id === parsed.keyId && k.revokedAt === null);
  if (!registered) throw new Error(`key ${parsed.keyId} is not registered (or was revoked): POST /v1/keys first`);
  signer = { key, keyId: parsed.keyId, by: registered.owner };
  $('key-state').textContent = `Signing as ${registered.owner} with ${parsed.keyId}.`;
}

// ---- rendering ----

let temporalUi: { temporalUiUrl: string; namespace: string } | null = null;

function workflowLink(runId: string, text = runId): HTMLElement {
  if (!temporalUi) return el('span', { class: 'mono' }, text);
  const url = `${temporalUi.temporalUiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(
    temporalUi.namespace,
  )}/workflows/${encodeURIComponent(runId)}`;
  return el(
    'a',
    { href: url, target: '_blank', rel: 'noopener', class: 'mono', title: 'the run in the Temporal UI' },
    text,
  );
}

function renderSummary(s: Summary): void {
  const figures: [string, number][] = [
    ['hosts', s.hosts],
    ['up to date', s.upToDate],
    ['pending', s.pending],
    ['failing', s.failing],
    ['unreachable', s.unreachable],
    ['pending reboot', s.pendingReboot],
  ];
  $('summary-figures').replaceChildren(
    ...figures.map(([name, n]) => el('div', { 'data-figure': name }, el('dt', {}, name), el('dd', {}, String(n)))),
  );
}

function planTable(plan: Pkg[]): HTMLTableElement {
  return el(
    'table',
    { class: 'plan' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', {}, 'package'),
        el('th', {}, 'arch'),
        el('th', {}, 'current → candidate'),
        el('th', {}, 'repository'),
      ),
    ),
    el(
      'tbody',
      {},
      ...plan.map((p) =>
        el(
          'tr',
          {},
          el('td', {}, p.name),
          el('td', {}, p.arch),
          el(
            'td',
            { class: 'mono' },
            p.current ?? '(new)',
            el('span', { class: 'arrow' }, ' → '),
            p.candidate ?? '(removed)',
          ),
          el('td', {}, p.repo, ' ', p.security ? badge('security', 'security') : null),
        ),
      ),
    ),
  );
}

/** Reject reasons typed so far, by plan hash: kept across redraws. */
const reasons = new Map<string, string>();
let shownGroups = '';
let latestGroups = '';

function renderGroups(groups: ReviewGroup[]): void {
  const total = groups.reduce((n, g) => n + g.runs.length, 0);
  $('review-count').textContent =
    `(${total} run${total === 1 ? '' : 's'}, ${groups.length} plan${groups.length === 1 ? '' : 's'})`;
  $('reviews-changed').hidden = true;
  const frag = document.createDocumentFragment();
  for (const g of groups) frag.append(renderGroup(g, groups));
  if (groups.length === 0) frag.append(el('p', { class: 'hint' }, 'Nothing waits for approval.'));
  $('groups').replaceChildren(frag);
}

function renderGroup(g: ReviewGroup, all: ReviewGroup[]): HTMLElement {
  const reason = el('input', {
    type: 'text',
    placeholder: 'reason (needed to reject)',
    'aria-label': 'reject reason',
    class: 'reason',
  });
  reason.value = reasons.get(g.planHash) ?? '';
  reason.addEventListener('input', () => reasons.set(g.planHash, reason.value));
  const reasonText = () => {
    const r = reason.value.trim();
    if (!r) throw new Error('a reason is required to reject');
    return r;
  };
  const approveAll = el(
    'button',
    { type: 'button', class: 'approve' },
    `Approve ${g.runs.length} run${g.runs.length === 1 ? '' : 's'}`,
  );
  approveAll.addEventListener(
    'click',
    () =>
      void act(approveAll, async () => {
        const approvals = [];
        for (const r of g.runs) approvals.push(await signStatement(r.id, g.planHash));
        return report('approved', await api<Decision>('POST', `/v1/reviews/${g.planHash}/approve`, { approvals }));
      }),
  );
  const rejectAll = el('button', { type: 'button', class: 'reject' }, 'Reject all');
  rejectAll.addEventListener(
    'click',
    () =>
      void act(rejectAll, async () =>
        report(
          'rejected',
          await api<Decision>('POST', `/v1/reviews/${g.planHash}/reject`, {
            reason: reasonText(),
            runIds: g.runs.map((r) => r.id),
          }),
        ),
      ),
  );

  const hosts = el(
    'table',
    { class: 'hosts-list' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', {}, 'host'),
        el('th', {}, 'run'),
        el('th', {}, 'held / excluded'),
        el('th', {}, 'reboot'),
        el('th', {}, 'waiting since'),
        el('th', {}, ''),
      ),
    ),
  );
  const body = el('tbody');
  for (const r of g.runs) {
    const approveOne = el('button', { type: 'button' }, 'Approve');
    approveOne.addEventListener(
      'click',
      () =>
        void act(approveOne, async () => {
          const { at, keyId, signature } = await signStatement(r.id, g.planHash);
          await api('POST', `/v1/runs/${encodeURIComponent(r.id)}/approve`, {
            planHash: g.planHash,
            at,
            keyId,
            signature,
          });
          return `approved ${r.id}`;
        }),
    );
    const rejectOne = el('button', { type: 'button', class: 'reject' }, 'Reject');
    rejectOne.addEventListener(
      'click',
      () =>
        void act(rejectOne, async () => {
          await api('POST', `/v1/runs/${encodeURIComponent(r.id)}/reject`, { reason: reasonText() });
          return `rejected ${r.id}`;
        }),
    );
    body.append(
      el(
        'tr',
        { 'data-run': r.id },
        el('td', {}, r.hostname, r.container === null ? '' : ` / ct ${r.container}`),
        el('td', {}, workflowLink(r.id, r.id.slice(-26))),
        el(
          'td',
          {},
          ...r.held.map((p) => badge(`held ${p.name}`, 'held')),
          ...r.exclusions.map((x) => badge(`excluded ${x}`, 'excluded')),
        ),
        el('td', {}, r.rebootRequired ? badge('reboot required', 'reboot') : ''),
        el('td', {}, when(r.waitingSince)),
        el('td', { class: 'actions' }, approveOne, rejectOne),
      ),
    );
  }
  hosts.append(body);

  // Compare with another plan: what one host gets that another does not.
  const others = all.filter((o) => o.planHash !== g.planHash);
  const diffOut = el('div', { class: 'diff' });
  let compare: HTMLElement | null = null;
  if (others.length > 0) {
    const pick = el('select', { 'aria-label': 'compare with' }, el('option', { value: '' }, 'compare with…'));
    for (const o of others)
      pick.append(
        el(
          'option',
          { value: o.runs[0].id },
          `${o.runs[0].hostname} (${o.hosts} host${o.hosts === 1 ? '' : 's'}, ${o.plan.length} packages)`,
        ),
      );
    pick.addEventListener('change', () => {
      if (!pick.value) return diffOut.replaceChildren();
      const q = `a=${encodeURIComponent(g.runs[0].id)}&b=${encodeURIComponent(pick.value)}`;
      api<{ onlyInA: Pkg[]; onlyInB: Pkg[]; differing: { name: string; a: Pkg; b: Pkg }[] }>(
        'GET',
        `/v1/reviews/diff?${q}`,
      )
        .then((d) =>
          diffOut.replaceChildren(
            el('p', {}, `only here: ${d.onlyInA.map((p) => p.name).join(', ') || 'none'}`),
            el('p', {}, `only there: ${d.onlyInB.map((p) => p.name).join(', ') || 'none'}`),
            el(
              'p',
              {},
              `different versions: ${d.differing.map((x) => `${x.name} ${x.a.candidate ?? '∅'} / ${x.b.candidate ?? '∅'}`).join(', ') || 'none'}`,
            ),
          ),
        )
        .catch((err: unknown) => say(String((err as Error).message), true));
    });
    compare = pick;
  }

  return el(
    'article',
    { class: 'group', 'data-plan-hash': g.planHash, 'data-hosts': String(g.hosts) },
    el(
      'h3',
      {},
      `${g.hosts} host${g.hosts === 1 ? '' : 's'} · ${g.plan.length} package${g.plan.length === 1 ? '' : 's'}`,
      g.securityPackages ? ' ' : '',
      g.securityPackages ? badge(`${g.securityPackages} security`, 'security') : null,
      g.rebootRequired ? badge(`${g.rebootRequired} reboot required`, 'reboot') : null,
    ),
    el('p', { class: 'hint' }, `plan ${g.planHash.slice(0, 12)}… · waiting since ${when(g.oldestWaitingSince)}`),
    planTable(g.plan),
    g.held.length
      ? el('p', {}, ...g.held.map((h) => badge(`held ${h.name} ${h.candidate ?? ''} (${h.runs})`, 'held')))
      : null,
    hosts,
    el('div', { class: 'actions' }, approveAll, reason, rejectAll, compare),
    diffOut,
  );
}

function report(verb: string, d: Decision): string {
  const lines = [`${verb} ${d.decided.length} run${d.decided.length === 1 ? '' : 's'}`];
  for (const r of d.refused) lines.push(`refused ${r.runId}: ${r.message}`);
  if (d.notIncluded.length)
    lines.push(`${d.notIncluded.length} other run(s) with this plan joined since: review again`);
  return lines.join('\n');
}

/** One admin action: the button waits, the result or the refusal is shown, then everything is redrawn. */
async function act(button: HTMLButtonElement, work: () => Promise<string>): Promise<void> {
  button.disabled = true;
  try {
    say(await work());
  } catch (err) {
    say(`refused: ${(err as Error).message}`, true);
  } finally {
    button.disabled = false;
  }
  await refresh(true);
}

function renderHosts(agents: AgentRow[]): void {
  const rows = agents.map((a) => {
    const c = a.compliance;
    const name = el('a', { class: 'host', href: '#', 'data-agent': a.id }, a.hostname);
    name.addEventListener('click', (e) => {
      e.preventDefault();
      void showHistory(a.id, a.hostname);
    });
    return el(
      'tr',
      { 'data-agent': a.id },
      el('td', {}, name),
      el('td', {}, badge(c.state, `state-${c.state}`)),
      el('td', {}, c.pendingUpgrades === null ? '—' : `${c.pendingUpgrades} (${c.pendingSecurity ?? 0})`),
      el('td', {}, ...c.held.map((h) => badge(h, 'held')), ...c.excluded.map((x) => badge(x, 'excluded'))),
      el('td', {}, c.rebootRequired ? `since ${when(c.rebootRequiredSince)}` : 'no'),
      el('td', { class: 'last-outcome' }, c.lastRun ? c.lastRun.outcome : '—'),
      el('td', {}, when(c.lastSuccessfulApplyAt)),
      el('td', {}, when(c.lastSeenAt)),
    );
  });
  $('host-table')
    .querySelector('tbody')!
    .replaceChildren(...rows);
}

let historyAgent: { id: string; hostname: string } | null = null;

async function showHistory(agentId: string, hostname: string): Promise<void> {
  historyAgent = { id: agentId, hostname };
  $('history').hidden = false;
  $('history-host').textContent = hostname;
  await loadHistory();
}

async function loadHistory(): Promise<void> {
  if (!historyAgent) return;
  const q = new URLSearchParams({ agentId: historyAgent.id, limit: '100' });
  const phase = $<HTMLSelectElement>('filter-phase').value;
  const outcome = $<HTMLSelectElement>('filter-outcome').value;
  if (phase) q.set('phase', phase);
  if (outcome) q.set('outcome', outcome);
  const { runs } = await api<{ runs: Run[] }>('GET', `/v1/runs?${q.toString()}`);
  $('history-table')
    .querySelector('tbody')!
    .replaceChildren(
      ...runs.map((r) =>
        el(
          'tr',
          { 'data-run': r.id },
          el('td', {}, workflowLink(r.id, r.id.slice(-26))),
          el('td', {}, r.mode),
          el('td', {}, r.phase),
          el('td', {}, r.outcome ?? '—'),
          el('td', {}, r.requestedBy),
          el('td', {}, r.approvedBy ?? r.rejectedBy ?? '—'),
          el('td', {}, when(r.createdAt)),
          el('td', {}, when(r.finishedAt)),
          el('td', {}, r.failureReason ?? r.rejectReason ?? ''),
          el('td', {}, outputButton(r.id)),
        ),
      ),
    );
}

// ---- live output (docs/review-desk.md "Live output") ----

interface OutputChunk {
  id: number;
  step: string;
  attempt: number;
  stream: 'stdout' | 'stderr';
  text: string;
  gapBefore: number;
}

/** Which run's output is followed; a newer choice stops the older loop. */
let liveRun: string | null = null;

function outputButton(runId: string): HTMLButtonElement {
  const b = el('button', { type: 'button', class: 'show-output' }, 'output');
  b.addEventListener('click', () => void followOutput(runId));
  return b;
}

/**
 * Follow a run's output as it arrives: long-polls (`after` + `waitMs`) rather than an
 * EventSource, which cannot send the Authorization header (the token never goes in a URL).
 * stderr is the script's human log; stdout (the JSON document) is shown too, marked.
 */
async function followOutput(runId: string): Promise<void> {
  liveRun = runId;
  $('live').hidden = false;
  $('live-run').textContent = runId;
  const pre = $('live-output');
  pre.replaceChildren();
  let after = 0;
  let shown = '';
  for (;;) {
    if (liveRun !== runId || !token) return;
    $('live-state').textContent = 'following…';
    let answer: { chunks: OutputChunk[]; next: number; ended: boolean };
    try {
      answer = await api('GET', `/v1/runs/${encodeURIComponent(runId)}/output?after=${after}&waitMs=10000`);
    } catch (err) {
      $('live-state').textContent = `could not read output: ${(err as Error).message}`;
      return;
    }
    if (liveRun !== runId) return;
    for (const c of answer.chunks) {
      const label = `${c.step}${c.attempt > 1 ? ` (attempt ${c.attempt})` : ''}`;
      if (label !== shown) pre.append(el('div', { class: 'output-step' }, `── ${label} ──`));
      shown = label;
      if (c.gapBefore > 0) pre.append(el('div', { class: 'output-gap' }, `…[${c.gapBefore} bytes cut]…`));
      pre.append(el('span', { class: `output-${c.stream}` }, c.text));
    }
    if (answer.chunks.length > 0) pre.scrollTop = pre.scrollHeight;
    after = answer.next;
    if (answer.ended && answer.chunks.length === 0) {
      $('live-state').textContent = 'run ended';
      return;
    }
  }
}

// ---- loading ----

let timer: number | undefined;

/** Redraw summary and hosts; the waiting plans only when asked (`groupsToo`) or the first time. */
async function refresh(groupsToo = false): Promise<void> {
  if (!token) return;
  try {
    // Each part is drawn as soon as it arrives: the waiting plans need not wait for the fleet's compliance.
    await Promise.all([
      api<{ groups: ReviewGroup[] }>('GET', '/v1/reviews').then((reviews) => {
        latestGroups = JSON.stringify(reviews.groups);
        if (groupsToo || shownGroups === '') {
          shownGroups = latestGroups;
          renderGroups(reviews.groups);
        } else if (latestGroups !== shownGroups) $('reviews-changed').hidden = false;
      }),
      api<Summary>('GET', '/v1/compliance').then(renderSummary),
      api<{ agents: AgentRow[] }>('GET', '/v1/agents').then((a) => renderHosts(a.agents)),
    ]);
    if (historyAgent) await loadHistory();
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) return signOut(`signed out: ${err.message}`);
    say(`could not load: ${(err as Error).message}`, true);
  }
}

function signedIn(): void {
  $('sign-in').hidden = true;
  $('desk').hidden = false;
  $('sign-out').hidden = false;
  shownGroups = '';
  void refresh(true);
  window.clearInterval(timer);
  timer = window.setInterval(() => void refresh(), REFRESH_MS);
}

function signOut(message = ''): void {
  token = null;
  signer = null;
  sessionStorage.removeItem(TOKEN_KEY);
  window.clearInterval(timer);
  $('desk').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in').hidden = false;
  $('key-state').textContent = 'No key loaded: you can reject, not approve.';
  if (message) alertSignIn(message);
}

function alertSignIn(message: string): void {
  const hint = $('sign-in').querySelector('.hint')!;
  hint.textContent = message;
}

function start(): void {
  for (const p of PHASES) $('filter-phase').append(el('option', { value: p }, p));
  for (const o of OUTCOMES) $('filter-outcome').append(el('option', { value: o }, o));
  $('history-filter').addEventListener('change', () => void loadHistory());
  $('sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('token');
    token = input.value.trim();
    input.value = '';
    // Checked before it is kept: a wrong token is refused here, not on the first refresh.
    api('GET', '/v1/compliance')
      .then(() => {
        sessionStorage.setItem(TOKEN_KEY, token!);
        signedIn();
      })
      .catch((err: unknown) => {
        token = null;
        alertSignIn(`sign-in refused: ${(err as Error).message}`);
      });
  });
  $('sign-out').addEventListener('click', () => signOut());
  $('reviews-refresh').addEventListener('click', () => void refresh(true));
  $<HTMLInputElement>('key-file').addEventListener('change', (e) => {
    const file = (e.target as HTMLInputElement).files?.[0];
    if (!file) return;
    loadKey(file).catch((err: unknown) => {
      signer = null;
      $('key-state').textContent = `key not loaded: ${(err as Error).message}`;
    });
  });
  fetch('/desk/config.json')
    .then((r) => r.json() as Promise<{ temporalUiUrl: string; namespace: string }>)
    .then((c) => (temporalUi = c))
    .catch(() => (temporalUi = null))
    .finally(() => {
      if (token) signedIn();
    });
}

start();
