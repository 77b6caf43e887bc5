/**
 * docker-compose.yml, validated (no container runtime runs on this machine kind): docker-compose
 * accepts it, refuses to resolve it while a secret is missing, and it keeps the promises its
 * header makes. What it runs is run for real by test/deploy/cluster.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { TemporalServerEnv, temporalServerDir, TEMPORAL_SERVER_VERSION } from '../../scripts/dev/temporal-cluster';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';
import { composeConfig, composeConfigRaw, TEST_SECRETS } from '../support/compose';

describe('docker-compose.yml', () => {
  it('passes `docker-compose config -q` with the secrets set', () => {
    const r = composeConfigRaw(TEST_SECRETS, ['-q']);
    assert.equal(r.status, 0, r.stderr);
  });

  it('refuses to resolve while any secret is missing, naming it and .env.example', () => {
    for (const name of Object.keys(TEST_SECRETS)) {
      const env = { ...TEST_SECRETS };
      delete env[name];
      const r = composeConfigRaw(env, ['-q']);
      assert.notEqual(r.status, 0, `${name} missing yet config passed`);
      assert.match(r.stderr, new RegExp(`${name}.*\\.env\\.example`));
    }
  });

  it('documents every variable it reads in .env.example', () => {
    const compose = readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
    const example = readFileSync(path.join(REPO_ROOT, '.env.example'), 'utf8');
    const read = new Set([...compose.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]));
    const documented = new Set([...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]));
    assert.deepEqual([...read].filter((v) => !documented.has(v)).sort(), []);
    assert.deepEqual([...documented].filter((v) => !read.has(v)).sort(), [], 'documented but unused');
  });

  it('publishes only the API, the agent gate and the Temporal UI (on loopback); the rest is internal', () => {
    const { services, networks } = composeConfig();
    const published = Object.entries(services)
      .filter(([, s]) => s.ports.length > 0)
      .map(([name, s]) => `${name}:${s.ports.map((p) => `${p.host_ip ?? '*'}:${p.published}->${p.target}`).join(',')}`)
      .sort();
    assert.deepEqual(published, ['api:*:8080->8080', 'gate:*:7280->7280', 'temporal-ui:127.0.0.1:8233->8080']);
    assert.equal(networks.internal?.internal, true);
    for (const name of ['postgres', 'temporal', 'temporal-schema', 'temporal-init'])
      assert.deepEqual(Object.keys(services[name].networks), ['internal'], name);
  });

  it('pins Temporal 1.29.1, waits on health or completion for every dependency, checks the health of what others wait on', () => {
    const { services, volumes } = composeConfig();
    assert.equal(services.temporal.image, `temporalio/server:${TEMPORAL_SERVER_VERSION}`);
    for (const job of ['temporal-schema', 'temporal-init'])
      assert.match(services[job].image ?? '', new RegExp(`^temporalio/admin-tools:${TEMPORAL_SERVER_VERSION}-`));
    for (const [name, s] of Object.entries(services))
      for (const [dep, { condition }] of Object.entries(s.depends_on)) {
        const wanted = ['temporal-schema', 'temporal-init'].includes(dep)
          ? 'service_completed_successfully'
          : 'service_healthy';
        assert.equal(condition, wanted, `${name} → ${dep}`);
        if (wanted === 'service_healthy') assert.ok(services[dep].healthcheck, `${dep} has a health check`);
      }
    assert.deepEqual(Object.keys(volumes).sort(), ['demo-agent-state', 'pgdata']);
    assert.deepEqual(services['demo-agent'].profiles, ['demo']);
  });

  it('gives the Temporal server a dynamic configuration whose keys and types the server knows', async () => {
    const dir = await temporalServerDir();
    const out = execFileSync(path.join(dir, 'temporal-server'), [
      'validate-dynamic-config',
      path.join(REPO_ROOT, 'deploy/temporal/config/dynamicconfig/patchnanny.yaml'),
    ]).toString();
    assert.doesNotMatch(out, /error|warning/, out);
  });

  it('sets the Temporal services only variables the server configuration template and setup scripts read', () => {
    const { services } = composeConfig();
    const known = new Set(Object.keys(TemporalServerEnv.shape));
    for (const name of ['temporal', 'temporal-schema', 'temporal-init']) {
      const unknown = Object.keys(services[name].environment).filter((k) => !known.has(k));
      assert.deepEqual(unknown, [], name);
    }
    // and the template reads each of them
    const template = readFileSync(path.join(REPO_ROOT, 'deploy/temporal/config/patchnanny.yaml'), 'utf8');
    for (const k of Object.keys(services.temporal.environment))
      assert.ok(template.includes(`env "${k}"`), `the template reads ${k}`);
  });
});
