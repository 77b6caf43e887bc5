/**
 * Helpers for the deploy tests: run deploy/agent/install.sh, read what it installed (the unit's
 * ExecStart and EnvironmentFile) and start the agent exactly as systemd would from that unit.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnvFile } from '../../runtime/env-file';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';

export const UNIT = 'patchnanny-agent.service';
/** The PATH systemd gives a system service (systemd.exec(5), "Environment variables in spawned processes"). */
export const SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Run an install.sh with argv (never a shell string); `input` goes to its standard input. */
export function runInstall(script: string, args: string[], input = ''): SpawnSyncReturns<string> {
  return spawnSync('bash', [script, ...args], { input, encoding: 'utf8', timeout: 120_000 });
}

/** Layout below an install root (`--root`), as install.sh writes it. */
export function layout(root: string) {
  return {
    prefix: path.join(root, 'opt/patchnanny-agent'),
    confDir: path.join(root, 'etc/patchnanny'),
    config: path.join(root, 'etc/patchnanny/agent.env'),
    token: path.join(root, 'etc/patchnanny/enrol-token'),
    state: path.join(root, 'var/lib/patchnanny-agent'),
    unit: path.join(root, 'etc/systemd/system', UNIT),
  };
}

/** `Key=value` settings of a unit file's [Service] section, in order (a key may repeat). */
export function serviceSettings(unitText: string): [string, string][] {
  const out: [string, string][] = [];
  let section = '';
  for (const line of unitText.split('\n')) {
    const t = line.trim();
    if (t.startsWith('[')) section = t;
    else if (section === '[Service]' && t && !t.startsWith('#')) {
      const i = t.indexOf('=');
      out.push([t.slice(0, i), t.slice(i + 1)]);
    }
  }
  return out;
}

/**
 * The environment a unit's service gets: Environment= assignments and the EnvironmentFile= files
 * (read with the same strict parser the agent's --check-config uses), plus systemd's PATH.
 */
export function unitEnvironment(unitFile: string): { vars: Record<string, string>; files: string[] } {
  const vars: Record<string, string> = {};
  const files: string[] = [];
  for (const [key, value] of serviceSettings(readFileSync(unitFile, 'utf8'))) {
    if (key === 'Environment')
      for (const assignment of value.split(/\s+/).filter(Boolean)) {
        const i = assignment.indexOf('=');
        vars[assignment.slice(0, i)] = assignment.slice(i + 1);
      }
    if (key === 'EnvironmentFile') {
      const file = value.replace(/^-/, '');
      files.push(file);
      Object.assign(vars, parseEnvFile(readFileSync(file, 'utf8'), file));
    }
  }
  return { vars, files };
}

/** Start the unit's ExecStart the way systemd does: its argv, its environment, nothing of ours. */
export function startLikeSystemd(unitFile: string, extraEnv: Record<string, string> = {}): ChildProcess {
  const exec = serviceSettings(readFileSync(unitFile, 'utf8')).find(([k]) => k === 'ExecStart');
  if (!exec) throw new Error(`${unitFile} has no ExecStart`);
  const [command, ...args] = exec[1].split(' ');
  return spawn(command, args, {
    env: { PATH: SYSTEMD_PATH, ...unitEnvironment(unitFile).vars, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * A release folder made of this build, as the tarball extracts (VERSION, install.sh, the unit, dist
 * linked): fast, for tests of install.sh itself; agent-install.test.ts proves the real tarball.
 */
export function stageRelease(dir: string, version: string): string {
  mkdirSync(dir);
  copyFileSync(path.join(REPO_ROOT, 'deploy/agent/install.sh'), path.join(dir, 'install.sh'));
  copyFileSync(path.join(REPO_ROOT, 'deploy/agent', UNIT), path.join(dir, UNIT));
  writeFileSync(path.join(dir, 'VERSION'), `${version}\n`);
  symlinkSync(path.join(REPO_ROOT, 'dist'), path.join(dir, 'dist'));
  return path.join(dir, 'install.sh');
}
