import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { generateSigningKey } from '../../runtime/script-signing';
import { layout, runInstall, stageRelease } from './install';

/**
 * An upgrade is the new release's install.sh run with no configuration options: it keeps the
 * configuration (checked by the new agent), switches `current`, keeps the previous version for a
 * rollback and removes older ones. A first install without options is refused.
 */
describe('upgrading the agent with install.sh', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-upgrade-'));
  const root = path.join(tmp, 'root');
  const L = layout(root);
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const release = (version: string) =>
    existsSync(path.join(tmp, version))
      ? path.join(tmp, version, 'install.sh')
      : stageRelease(path.join(tmp, version), version);
  const install = (version: string, args: string[] = []) =>
    runInstall(release(version), ['--root', root, '--node', process.execPath, ...args]);

  it('keeps the configuration, switches current, keeps one previous version and refuses a first install without options', () => {
    const bare = install('1.0.0');
    assert.equal(bare.status, 1);
    assert.match(bare.stderr, /no .*agent\.env yet: give --api-url, --gate/);

    writeFileSync(path.join(tmp, 'token'), 'pne_upgrade\n');
    const first = install('1.0.0', [
      '--api-url',
      'http://127.0.0.1:9',
      '--gate',
      '127.0.0.1:9',
      '--enrol-token-file',
      path.join(tmp, 'token'),
      '--trusted-script-keys',
      generateSigningKey().publicLine,
    ]);
    assert.equal(first.status, 0, first.stderr);
    const config = readFileSync(L.config, 'utf8');

    for (const version of ['1.1.0', '1.2.0']) {
      const r = install(version);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /config OK: /, 'the new agent checked the kept configuration');
      assert.equal(readlinkSync(path.join(L.prefix, 'current')), version);
    }
    assert.equal(readFileSync(L.config, 'utf8'), config, 'configuration kept as it was');
    assert.ok(existsSync(path.join(L.prefix, '1.1.0')), 'the previous version stays for a rollback');
    assert.equal(existsSync(path.join(L.prefix, '1.0.0')), false, 'older ones are removed');
  });

  it('refuses arguments it cannot trust before touching anything', () => {
    const cases: [string[], RegExp][] = [
      [['--gate', 'no-port'], /--gate must be host:port/],
      [['--api-url', 'ftp://x'], /--api-url must be an http\(s\) URL/],
      [['--state-dir', '/var/lib/other'], /last component must contain 'patchnanny'/],
      [['--set', 'PATCHNANNY_AGENT_HOSTNAME=a b'], /may not hold spaces/],
      [['--root', 'relative/dir'], /--root must be an absolute path/],
      [['--purge'], /--purge goes with --uninstall/],
    ];
    const installer = path.join(tmp, '1.0.0/install.sh');
    for (const [args, message] of cases) {
      const r = runInstall(installer, ['--root', path.join(tmp, 'untouched'), ...args]);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, message);
    }
    assert.equal(existsSync(path.join(tmp, 'untouched')), false);
  });
});
