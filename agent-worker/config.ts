import path from 'node:path';
import { z } from 'zod';
import { Family } from '../contract';
import { TemporalEnv } from '../runtime/temporal';

/** Names a script's environment sets itself, or that hold the agent's own configuration and credentials. */
const RESERVED_SCRIPT_ENV = /^(PATCHNANNY_.*|TEMPORAL_.*|PATH|LANG|LC_ALL|HOME)$/;

/** Agent configuration from the environment, validated at start (flags map onto the same names). */
export const AgentEnv = TemporalEnv.extend({
  PATCHNANNY_API_URL: z.url('PATCHNANNY_API_URL must be the API base URL, e.g. http://127.0.0.1:8080'),
  /** Token used once to register (admin or enrolment token); afterwards the agent's own token is used. */
  PATCHNANNY_ENROL_TOKEN: z.string().min(1).optional(),
  /** Identity, verified scripts and state live here (0700). */
  PATCHNANNY_AGENT_STATE_DIR: z.string().default('/var/lib/patchnanny-agent'),
  /** Override the detected family (e.g. on a derivative the detection does not know). */
  PATCHNANNY_AGENT_FAMILY: Family.optional(),
  PATCHNANNY_AGENT_HOSTNAME: z.string().optional(),
  PATCHNANNY_OS_RELEASE: z.string().default('/etc/os-release'),
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
  PATCHNANNY_SCRIPT_ENV: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n !== ''),
    )
    .pipe(
      z
        .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a variable name'))
        .refine(
          (names) => names.every((n) => !RESERVED_SCRIPT_ENV.test(n)),
          'PATCHNANNY_SCRIPT_ENV may not name PATCHNANNY_*, TEMPORAL_*, PATH, LANG, LC_ALL or HOME',
        ),
    ),
});
export type AgentEnv = z.infer<typeof AgentEnv>;

/** Flags `--api-url X --state-dir Y …` become their env names, so one schema validates both. */
export function flagsToEnv(argv: string[]): Record<string, string> {
  const names: Record<string, string> = {
    '--api-url': 'PATCHNANNY_API_URL',
    '--enrol-token': 'PATCHNANNY_ENROL_TOKEN',
    '--state-dir': 'PATCHNANNY_AGENT_STATE_DIR',
    '--family': 'PATCHNANNY_AGENT_FAMILY',
    '--hostname': 'PATCHNANNY_AGENT_HOSTNAME',
    '--script-shell': 'PATCHNANNY_SCRIPT_SHELL',
    '--script-env': 'PATCHNANNY_SCRIPT_ENV',
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
