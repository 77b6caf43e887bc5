/**
 * docker-compose.yml as docker-compose itself resolves it (variables interpolated from the
 * environment and .env.example, anchors merged), read as JSON through the YAML parser
 * docker-compose ships with (python3-yaml). No container runtime is needed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';

export const COMPOSE_FILE = path.join(REPO_ROOT, 'docker-compose.yml');
export const ENV_EXAMPLE = path.join(REPO_ROOT, '.env.example');

/** Values for the secrets .env.example leaves empty, so `config` can resolve the file. */
export const TEST_SECRETS: Record<string, string> = {
  POSTGRES_PASSWORD: 'compose-test-password',
  PATCHNANNY_ADMIN_TOKENS: 'admin:compose-test-token',
  PATCHNANNY_GATE_KEY: 'compose-test-gate-key-0123456789abcdef',
};

const Service = z.object({
  image: z.string().optional(),
  build: z.unknown().optional(),
  entrypoint: z.array(z.string()).optional(),
  command: z.array(z.string()).optional(),
  environment: z.record(z.string(), z.string().nullable()).default({}),
  /** docker-compose 1.29 prints a port with a host address in the short form, others as objects. */
  ports: z
    .array(
      z.union([
        z
          .string()
          .regex(/^\S+:\d+:\d+(\/tcp)?$/)
          .transform((p) => {
            const [hostIp, published, target] = p.replace(/\/tcp$/, '').split(':');
            return { host_ip: hostIp, published: Number(published), target: Number(target) };
          }),
        z.object({ target: z.number(), published: z.coerce.number(), host_ip: z.string().optional() }),
      ]),
    )
    .default([]),
  networks: z.record(z.string(), z.unknown().nullable()).default({}),
  depends_on: z.record(z.string(), z.object({ condition: z.string() })).default({}),
  healthcheck: z.object({ test: z.array(z.string()) }).optional(),
  profiles: z.array(z.string()).default([]),
  volumes: z.array(z.unknown()).default([]),
});
export type ComposeService = z.infer<typeof Service>;

export const ComposeFile = z.object({
  services: z.record(z.string(), Service),
  volumes: z.record(z.string(), z.unknown().nullable()).default({}),
  networks: z.record(z.string(), z.object({ internal: z.boolean().optional() }).nullable()).default({}),
});
export type ComposeFile = z.infer<typeof ComposeFile>;

/** `docker-compose config` with `env` over a minimal environment: its exit code and output. */
export function composeConfigRaw(env: Record<string, string>, args: string[] = []) {
  const r = spawnSync('docker-compose', ['--env-file', ENV_EXAMPLE, '-f', COMPOSE_FILE, 'config', ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The resolved compose file, parsed (fails if docker-compose refuses it). */
export function composeConfig(env: Record<string, string> = TEST_SECRETS): ComposeFile {
  const r = composeConfigRaw(env);
  if (r.status !== 0) throw new Error(`docker-compose config failed (${r.status}):\n${r.stderr}`);
  const json = execFileSync(
    'python3',
    ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    {
      input: r.stdout,
    },
  ).toString();
  return ComposeFile.parse(JSON.parse(json));
}

/** The argv a service runs (entrypoint + command), as the test compares it with what it spawns. */
export const argvOf = (s: ComposeService): string[] => [...(s.entrypoint ?? []), ...(s.command ?? [])];
