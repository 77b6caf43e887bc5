import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { Family } from '../contract';
import { parseLabelList, type Labels } from '../contract/labels';
import { parseTrustedKeys, type TrustedKey } from '../runtime/script-signing';
import { TemporalEnv } from '../runtime/temporal';

/** Names a script's environment sets itself, or that hold the agent's own configuration and credentials. */
const RESERVED_SCRIPT_ENV = /^(PATCHNANNY_.*|TEMPORAL_.*|PATH|LANG|LC_ALL|HOME)$/;

/** Agent configuration from the environment, validated at start (flags map onto the same names). */
/** A comma-separated list in one variable, items trimmed, empty ones dropped. */
const commaList = z
  .string()
  .default('')
  .transform((s) =>
    s
      .split(',')
      .map((n) => n.trim())
      .filter((n) => n !== ''),
  );

export const AgentEnv = TemporalEnv.extend({
  PATCHNANNY_API_URL: z.url('PATCHNANNY_API_URL must be the API base URL, e.g. http://127.0.0.1:8080'),
  /**
   * Token used once to register (an enrolment token, or an admin's); afterwards the agent's own
   * token is used. Removed from the agent's environment as soon as it is parsed, so no patch script
   * inherits it; PATCHNANNY_ENROL_TOKEN_FILE (read once, never kept) keeps it out of the
   * environment altogether and is the recommended way.
   */
  PATCHNANNY_ENROL_TOKEN: z.string().min(1).optional(),
  PATCHNANNY_ENROL_TOKEN_FILE: z.string().min(1).optional(),
  /** How often a pending agent asks whether an admin has accepted it. */
  PATCHNANNY_AGENT_ACCEPT_POLL_MS: z.coerce.number().int().min(10).default(10_000),
  /**
   * How often a running agent reads its own record: it is the agent's liveness signal (last seen)
   * and how it learns it was revoked, upon which it stops and exits 77 (the gate already refuses it).
   */
  PATCHNANNY_AGENT_CHECK_MS: z.coerce.number().int().min(10).default(60_000),
  /** Identity, verified scripts and state live here (0700). */
  PATCHNANNY_AGENT_STATE_DIR: z.string().default('/var/lib/patchnanny-agent'),
  /** Override the detected family (e.g. on a derivative the detection does not know). */
  PATCHNANNY_AGENT_FAMILY: Family.optional(),
  PATCHNANNY_AGENT_HOSTNAME: z.string().optional(),
  /**
   * `env=prod,role=web` (issue 12): sent at the agent's first registration only. After that admins
   * own its labels (PUT /v1/agents/:id/labels): a host must not move itself into another group.
   */
  PATCHNANNY_LABELS: z
    .string()
    .default('')
    .transform((text, ctx): Labels => {
      try {
        return parseLabelList(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `PATCHNANNY_LABELS: ${(err as Error).message}` });
        return z.NEVER;
      }
    }),
  PATCHNANNY_OS_RELEASE: z.string().default('/etc/os-release'),
  /**
   * Ed25519 public keys (`<keyId>:<base64url>`, comma-separated) a patch script must be signed by,
   * besides matching its pinned SHA-256; several at once while a release key is rotated
   * (docs/script-signing.md). PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE names a file of such lines
   * (`#` comments); both may be given and add up. Without any the agent refuses to start.
   */
  PATCHNANNY_TRUSTED_SCRIPT_KEYS: z.string().default(''),
  PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE: z.string().min(1).optional(),
  /**
   * `1`: run scripts checked by their pinned hash only when no key is trusted. Insecure (whoever
   * controls the control plane's database then runs any script as root on every host): for
   * development and tests only.
   */
  PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS: z.enum(['0', '1']).default('0'),
  /** SIGTERM → SIGKILL grace for a stopped dry-run's process group (its cleanup may need 30 s). */
  PATCHNANNY_SCRIPT_KILL_GRACE_MS: z.coerce.number().int().min(0).default(30_000),
  /**
   * The interpreter the verified script is run with (`<shell> <verified file> --apply …`); for
   * containers and tests that run the script in another root through a wrapper. The hash check is
   * unchanged: the wrapper is handed the verified file.
   */
  PATCHNANNY_SCRIPT_SHELL: z.string().min(1).default('/bin/bash'),
  /**
   * Names (not values) of variables passed from the agent's environment to patch scripts, which
   * otherwise get only PATH, LANG, LC_ALL, HOME, TMPDIR and PATCHNANNY_RUN_ID
   * (docs/script-contract.md): e.g. `http_proxy,https_proxy,no_proxy` behind a proxy. The
   * agent's own configuration (PATCHNANNY_*, TEMPORAL_*) can never be passed on.
   */
  PATCHNANNY_SCRIPT_ENV: commaList.pipe(
    z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a variable name'))
      .refine(
        (names) => names.every((n) => !RESERVED_SCRIPT_ENV.test(n)),
        'PATCHNANNY_SCRIPT_ENV may not name PATCHNANNY_*, TEMPORAL_*, PATH, LANG, LC_ALL or HOME',
      ),
  ),
  /**
   * Proxmox VE (docs/proxmox.md): `auto` patches the node's LXC containers when `pveversion`
   * runs (the agent is on a PVE node), `off` never looks.
   */
  PATCHNANNY_PVE: z.enum(['auto', 'off']).default('auto'),
  PATCHNANNY_PVE_PCT: z.string().min(1).default('/usr/sbin/pct'),
  PATCHNANNY_PVE_PVEVERSION: z.string().min(1).default('/usr/bin/pveversion'),
  /** VMIDs never discovered nor patched (a container tagged `patchnanny-exclude` is left out too). */
  PATCHNANNY_PVE_EXCLUDE: commaList.pipe(
    z.array(z.string().regex(/^[1-9][0-9]{2,8}$/, 'a VMID')).transform((a) => new Set(a.map(Number))),
  ),
  /** How often the node reports its containers to the API (also once at start). */
  PATCHNANNY_PVE_INVENTORY_MS: z.coerce.number().int().min(100).default(300_000),
  /**
   * Issue 12 (docs/reboot-and-hooks.md): where the host's boot id is read (a run that rebooted the
   * host waits for a different one) and the shutdown binary a reboot runs as `<bin> -r +1 <message>`.
   * The control plane can ask for a reboot, never say how: tests point these at fixtures.
   */
  PATCHNANNY_BOOT_ID_FILE: z
    .string()
    .regex(/^\//, 'PATCHNANNY_BOOT_ID_FILE must be an absolute path')
    .default('/proc/sys/kernel/random/boot_id'),
  PATCHNANNY_SHUTDOWN_BIN: z
    .string()
    .regex(/^\//, 'PATCHNANNY_SHUTDOWN_BIN must be an absolute path')
    .default('/sbin/shutdown'),
  /** patchnanny snapshots kept per container; older ones are deleted after a new one is taken. */
  PATCHNANNY_PVE_SNAPSHOT_KEEP: z.coerce.number().int().min(1).max(100).default(3),
});
export type AgentEnv = z.infer<typeof AgentEnv>;

/** Flags `--api-url X --state-dir Y …` become their env names, so one schema validates both. */
export function flagsToEnv(argv: string[]): Record<string, string> {
  const names: Record<string, string> = {
    '--api-url': 'PATCHNANNY_API_URL',
    '--enrol-token': 'PATCHNANNY_ENROL_TOKEN',
    '--enrol-token-file': 'PATCHNANNY_ENROL_TOKEN_FILE',
    '--state-dir': 'PATCHNANNY_AGENT_STATE_DIR',
    '--family': 'PATCHNANNY_AGENT_FAMILY',
    '--hostname': 'PATCHNANNY_AGENT_HOSTNAME',
    '--labels': 'PATCHNANNY_LABELS',
    '--script-shell': 'PATCHNANNY_SCRIPT_SHELL',
    '--script-env': 'PATCHNANNY_SCRIPT_ENV',
    '--trusted-script-keys': 'PATCHNANNY_TRUSTED_SCRIPT_KEYS',
    '--trusted-script-keys-file': 'PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE',
    '--temporal-address': 'TEMPORAL_ADDRESS',
    '--namespace': 'TEMPORAL_NAMESPACE',
  };
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const name = names[argv[i]];
    const value = argv[i + 1];
    if (!name || value === undefined)
      throw new Error(`unknown or incomplete flag ${argv[i]} (known: ${Object.keys(names).join(' ')})`);
    out[name] = value;
    i++;
  }
  return out;
}

export const identityPath = (stateDir: string) => path.join(stateDir, 'identity.json');

export const Identity = z.object({ agentId: z.string(), token: z.string(), apiUrl: z.string() });
export type Identity = z.infer<typeof Identity>;

/** The environment variables that carry (or point at) the enrolment token: never kept after parsing. */
export const ENROLMENT_ENV = ['PATCHNANNY_ENROL_TOKEN', 'PATCHNANNY_ENROL_TOKEN_FILE'] as const;

/**
 * Take the enrolment token out of the process environment (which every patch script inherits);
 * call right after the configuration is parsed. The parsed configuration keeps it until registration.
 */
export function forgetEnrolmentEnv(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of ENROLMENT_ENV) delete env[name];
}

/**
 * The keys scripts must be signed by, from PATCHNANNY_TRUSTED_SCRIPT_KEYS(_FILE). None is refused
 * (the agent does not start) unless PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS=1, which is said loudly.
 */
export function trustedScriptKeys(env: AgentEnv, log: (line: string) => void): TrustedKey[] {
  const text = [
    env.PATCHNANNY_TRUSTED_SCRIPT_KEYS,
    env.PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE ? readFileSync(env.PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE, 'utf8') : '',
  ].join('\n');
  const keys = parseTrustedKeys(text);
  if (keys.length > 0) {
    log(`scripts must be signed by one of: ${keys.map((k) => k.keyId).join(', ')}`);
    return keys;
  }
  if (env.PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS !== '1')
    throw new Error(
      'no trusted script signing key: set PATCHNANNY_TRUSTED_SCRIPT_KEYS (or PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE) ' +
        'to the release key(s) scripts are signed with (docs/script-signing.md)',
    );
  log(
    'WARNING: PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS=1 and no trusted script key: scripts are checked by their pinned ' +
      'hash only, so whoever controls the control plane can run any script as root here. Development only.',
  );
  return [];
}

/**
 * The agent reaches Temporal only through the agent gate, with its own token: a namespace
 * credential on a host would let that host act for the whole fleet, so none is accepted.
 */
export function refuseNamespaceCredentials(env: AgentEnv): void {
  for (const name of ['TEMPORAL_API_KEY', 'TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY'] as const)
    if (env[name])
      throw new Error(
        `${name} is a namespace credential; an agent connects to the agent gate with its own token, remove it`,
      );
}

/** Exit code of an agent an admin revoked: a supervisor should not restart it (distinct from 1, any other failure). */
export const EXIT_REVOKED = 77;
