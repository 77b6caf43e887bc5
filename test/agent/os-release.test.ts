import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { detectFamily, parseOsRelease, YUM3_UNSUPPORTED, type Unsupported } from '../../agent-worker/os-release';
import { renderLog } from '../../scripts/dev/log-lines';

const rel = (text: string) => parseOsRelease(text);

/** /etc/os-release of a Proxmox VE 8.2 host, verbatim. */
const PVE8_OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`;

describe('the agent detects its package-manager family from /etc/os-release', () => {
  const yum3: Unsupported = { unsupported: YUM3_UNSUPPORTED };
  const cases: [string, string, string[], string | Unsupported | null][] = [
    ['Debian 12', 'ID=debian\nVERSION_ID="12"\n', [], 'apt'],
    ['Ubuntu 22.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', [], 'apt'],
    // A Proxmox VE 8 host ships Debian's os-release unchanged (what marks it as PVE is
    // `pveversion` and /etc/pve, which detection does not look at): it is patched as Debian.
    ['Proxmox VE 8 (its os-release is Debian 12’s)', PVE8_OS_RELEASE, ['pveversion'], 'apt'],
    ['Rocky 9 with dnf', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n', ['dnf'], 'dnf'],
    ['CentOS 7 with only yum', 'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n', ['yum'], yum3],
    ['Amazon Linux 2 (yum 3)', 'ID="amzn"\nID_LIKE="centos rhel fedora"\nVERSION_ID="2"\n', ['yum'], yum3],
    [
      'Rocky 8 whose only entry point is yum',
      'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.9"\n',
      ['yum'],
      'yum',
    ],
    ['Fedora 40', 'ID=fedora\nVERSION_ID=40\n', ['dnf'], 'dnf'],
    ['SLES 15', 'ID="sles"\nID_LIKE="suse"\nVERSION_ID="15.5"\n', [], 'zypper'],
    ['openSUSE Leap', 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', [], 'zypper'],
    ['Arch', 'ID=arch\n', [], 'pacman'],
    ['Alpine (not supported)', 'ID=alpine\n', [], null],
  ];
  for (const [name, text, commands, family] of cases) {
    it(`${name} → ${typeof family === 'string' ? family : 'unsupported'}`, () => {
      assert.deepEqual(
        detectFamily(rel(text), (c) => commands.includes(c)),
        family,
      );
    });
  }

  it('this machine is detected as apt', () => {
    assert.equal(
      detectFamily(rel(readFileSync('/etc/os-release', 'utf8')), () => true),
      'apt',
    );
  });

  it('an agent on EL 7 (yum 3) refuses to enrol and says why, before contacting the API', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pn-el7-'));
    try {
      writeFileSync(
        path.join(dir, 'os-release'),
        'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n',
      );
      // PATH holds a yum and no dnf, as on EL 7; the API URL answers nothing, so a registration attempt would fail differently.
      const bin = path.join(dir, 'bin');
      mkdirSync(bin);
      writeFileSync(path.join(bin, 'yum'), '#!/bin/sh\necho 3.4.3\n');
      chmodSync(path.join(bin, 'yum'), 0o755);
      const r = spawnSync(process.execPath, [path.resolve(__dirname, '../../agent-worker/main.js')], {
        env: {
          PATH: bin,
          PATCHNANNY_API_URL: 'http://127.0.0.1:9',
          PATCHNANNY_ENROL_TOKEN: 'enrol',
          PATCHNANNY_AGENT_STATE_DIR: path.join(dir, 'state'),
          PATCHNANNY_OS_RELEASE: path.join(dir, 'os-release'),
          // Past the agent's first refusal (no trusted script key) to the one this test is about.
          PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS: '1',
        },
        encoding: 'utf8',
      });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      // said as the agent's last JSON log line, at level fatal
      assert.match(
        renderLog(r.stdout),
        /\[agent\] FATAL yum 3 \(EL 7\) is not supported: patchnanny needs dnf 4 \(EL 8\+\) \(CentOS Linux 7 \(Core\)\)/,
      );
      assert.equal(existsSync(path.join(dir, 'state/identity.json')), false, 'no identity: it never registered');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
