import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { scriptsService } from '../../api/scripts/service';
import { FIXTURE_SCRIPTS, Stack } from '../support/stack';

describe('the scripts folder is what the API serves', () => {
  const stack = new Stack();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-scripts-'));
  before(() => stack.start());
  after(async () => {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a script removed from the folder is no longer listed or served after the next load', async () => {
    copyFileSync(path.join(FIXTURE_SCRIPTS, 'apt-update.sh'), path.join(dir, 'apt-update.sh'));
    copyFileSync(path.join(FIXTURE_SCRIPTS, 'apt-update.sh'), path.join(dir, 'yum-update.sh'));
    const scripts = scriptsService({ db: stack.database.db });
    await scripts.load(dir);
    const names = async () => (await stack.http('GET', '/v1/scripts')).body.scripts.map((s: any) => s.name);
    assert.deepEqual(await names(), ['apt-update.sh', 'yum-update.sh']);

    unlinkSync(path.join(dir, 'yum-update.sh'));
    await scripts.load(dir);
    assert.deepEqual(await names(), ['apt-update.sh']);
    assert.equal((await stack.http('GET', '/v1/scripts/yum-update.sh')).status, 404);
  });
});
