import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { detectFamily, parseOsRelease } from '../../agent-worker/os-release';

const rel = (text: string) => parseOsRelease(text);

describe('the agent detects its package-manager family from /etc/os-release', () => {
  const cases: [string, string, string[], string | null][] = [
    ['Debian 12', 'ID=debian\nVERSION_ID="12"\n', [], 'apt'],
    ['Ubuntu 22.04', 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', [], 'apt'],
    ['Proxmox VE (Debian)', 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', [], 'apt'],
    ['Rocky 9 with dnf', 'ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n', ['dnf'], 'dnf'],
    ['CentOS 7 with only yum', 'ID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n', ['yum'], 'yum'],
    ['Fedora 40', 'ID=fedora\nVERSION_ID=40\n', ['dnf'], 'dnf'],
    ['SLES 15', 'ID="sles"\nID_LIKE="suse"\nVERSION_ID="15.5"\n', [], 'zypper'],
    ['openSUSE Leap', 'ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', [], 'zypper'],
    ['Arch', 'ID=arch\n', [], 'pacman'],
    ['Alpine (not supported)', 'ID=alpine\n', [], null],
  ];
  for (const [name, text, commands, family] of cases) {
    it(`${name} → ${family ?? 'unsupported'}`, () => {
      assert.equal(
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
});
