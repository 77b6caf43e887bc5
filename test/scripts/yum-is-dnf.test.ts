import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';

// yum-update.sh ships as its own file (agents download and hash-verify one file), but it is
// dnf-update.sh with another manager: on EL 8+ `yum` is dnf 4. This keeps the two from drifting.
const body = (name: string) => {
  const text = readFileSync(path.resolve(__dirname, '../../../scripts/patch', name), 'utf8');
  const afterHeader = text.slice(text.indexOf('set -euo pipefail'));
  return afterHeader.replace(/# MANAGER:[\s\S]*?# end MANAGER/, '<manager>');
};

it('yum-update.sh is dnf-update.sh with only the MANAGER block changed', () => {
  assert.equal(body('yum-update.sh'), body('dnf-update.sh'));
});
