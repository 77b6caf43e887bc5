import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AgentEnv } from '../../agent-worker/config';
import { ApiEnv } from '../../api/env';
import { GateEnv } from '../../gate/config';
import { envVariables, parseEnvFile } from '../../runtime/env-file';
import { generateSigningKey } from '../../runtime/script-signing';
import { TemporalEnv } from '../../runtime/temporal';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';
import { layout, runInstall, stageRelease, unitEnvironment } from './install';

/** One process's environment as a deployment file sets it, and the schema that process parses it with. */
interface EnvSource {
  what: string;
  schema: z.ZodObject;
  vars: Record<string, string>;
}

/** Names set that the schema does not know (a typo is silently ignored), and required names not set. */
function mismatches(source: EnvSource): string[] {
  const known = envVariables(source.schema);
  const names = new Set(known.map((v) => v.name));
  // An agent passes the variables PATCHNANNY_SCRIPT_ENV names on to patch scripts (a proxy, say).
  const passedOn = new Set((source.vars.PATCHNANNY_SCRIPT_ENV ?? '').split(',').map((n) => n.trim()));
  const unknown = Object.keys(source.vars)
    .filter((n) => !names.has(n) && !passedOn.has(n))
    .map((n) => `${source.what}: ${n} is set but no configuration schema knows it`);
  const missing = known
    .filter((v) => v.required && !(v.name in source.vars))
    .map((v) => `${source.what}: required ${v.name} is not set`);
  return [...unknown, ...missing];
}

/** The app services of a compose file (those running one of our entry points), each with its schema. */
const ENTRY_SCHEMAS: [RegExp, z.ZodObject][] = [
  [/^node dist\/api\/main\.js$/, ApiEnv],
  [/^node dist\/gate\/main\.js$/, GateEnv],
  [/^node dist\/agent-worker\/main\.js$/, AgentEnv],
];

const ComposeFile = z.object({
  services: z.record(
    z.string(),
    z.object({
      command: z.union([z.string(), z.array(z.string())]).optional(),
      build: z.unknown().optional(),
      env_file: z.union([z.string(), z.array(z.union([z.string(), z.object({ path: z.string() })]))]).optional(),
      environment: z
        .union([z.array(z.string()), z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))])
        .optional(),
    }),
  ),
});

/**
 * A compose file's app services as env sources: `environment:` (map or list) plus `env_file:`
 * (a git-ignored `.env` is read from its documented `.env.example`). A service built from this
 * repository (`build:`) must run one of the entry points.
 */
export function composeSources(file: string): EnvSource[] {
  const doc = ComposeFile.parse(parseYaml(readFileSync(file, 'utf8'), { merge: true }));
  const dir = path.dirname(file);
  const sources: EnvSource[] = [];
  for (const [name, service] of Object.entries(doc.services)) {
    const command = [service.command ?? []].flat().join(' ');
    const schema = ENTRY_SCHEMAS.find(([re]) => re.test(command))?.[1];
    if (!schema) {
      assert.equal(service.build, undefined, `compose service ${name} builds our image but runs "${command}"`);
      continue;
    }
    const vars: Record<string, string> = {};
    for (const entry of [service.env_file ?? []].flat()) {
      let envFile = path.resolve(dir, typeof entry === 'string' ? entry : entry.path);
      if (!existsSync(envFile) && existsSync(`${envFile}.example`)) envFile = `${envFile}.example`;
      Object.assign(vars, parseEnvFile(readFileSync(envFile, 'utf8'), envFile));
    }
    const env = service.environment ?? {};
    if (Array.isArray(env))
      for (const item of env) vars[item.split('=')[0]] = item.includes('=') ? item.slice(item.indexOf('=') + 1) : '';
    else for (const [k, v] of Object.entries(env)) vars[k] = v === null ? '' : String(v);
    sources.push({ what: `docker-compose.yml service ${name}`, schema, vars });
  }
  return sources;
}

/**
 * Every variable a deployment file sets is one a configuration schema knows (api/env.ts ApiEnv,
 * agent-worker/config.ts AgentEnv, gate/config.ts GateEnv, all extending runtime/temporal.ts), and
 * every required one is set: the install script's config and the systemd unit here; the compose
 * file's app services in their own test. The schemas are read for their names, so a variable added
 * to one is checked at once.
 */
describe('deployment files set only the variables the configuration schemas know', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-names-'));
  const root = path.join(tmp, 'root');
  const L = layout(root);

  before(() => {
    // A release folder made of this build (no tarball: agent-install.test.ts proves the tarball);
    // every option install.sh has that writes a variable is given, so each one is checked.
    const installer = stageRelease(path.join(tmp, 'release'), '0.0.0-names');
    writeFileSync(path.join(tmp, 'token'), 'pne_names-test-token\n');
    writeFileSync(path.join(tmp, 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
    const r = runInstall(installer, [
      '--root',
      root,
      '--node',
      process.execPath,
      '--api-url',
      'https://patchnanny.example:8443',
      '--gate',
      'gate.example:7280',
      '--namespace',
      'patching',
      '--gate-ca',
      path.join(tmp, 'ca.pem'),
      '--gate-server-name',
      'gate.example',
      '--enrol-token-file',
      path.join(tmp, 'token'),
      '--trusted-script-keys',
      generateSigningKey().publicLine,
      '--set',
      'PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS=0',
      '--family',
      'apt',
      '--hostname',
      'names-host',
      '--script-env',
      'https_proxy',
      '--set',
      'https_proxy=http://proxy.example:3128',
    ]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the config install.sh writes and the environment the systemd unit gives the agent', () => {
    const sources: EnvSource[] = [
      { what: 'install.sh agent.env', schema: AgentEnv, vars: parseEnvFile(readFileSync(L.config, 'utf8')) },
      { what: 'patchnanny-agent.service', schema: AgentEnv, vars: unitEnvironment(L.unit).vars },
    ];
    assert.deepEqual(sources.flatMap(mismatches), []);
    assert.ok(Object.keys(sources[0].vars).length >= 10, 'every option wrote its variable');
  });

  it('a misspelt or missing variable is caught (the check itself can fail)', () => {
    const vars = parseEnvFile(readFileSync(L.config, 'utf8'));
    delete vars.PATCHNANNY_API_URL;
    vars.PATCHNANNY_AGENT_HOSTNAM = 'typo';
    assert.deepEqual(mismatches({ what: 'edited', schema: AgentEnv, vars }), [
      'edited: PATCHNANNY_AGENT_HOSTNAM is set but no configuration schema knows it',
      'edited: required PATCHNANNY_API_URL is not set',
    ]);
    assert.deepEqual(
      envVariables(GateEnv)
        .filter((v) => v.required)
        .map((v) => v.name),
      ['PATCHNANNY_GATE_KEY', 'DATABASE_URL'],
    );
    assert.ok(envVariables(TemporalEnv).every((v) => !v.required));
  });

  it('the compose file sets only known variables on the API, gate and agent services, and every required one', () => {
    const file = path.join(REPO_ROOT, 'docker-compose.yml');
    assert.ok(existsSync(file), 'docker-compose.yml exists');
    const sources = composeSources(file);
    for (const schema of [ApiEnv, GateEnv])
      assert.ok(
        sources.some((s) => s.schema === schema),
        `a compose service runs ${schema === ApiEnv ? 'the API' : 'the gate'}`,
      );
    assert.deepEqual(sources.flatMap(mismatches), []);
  });
});
