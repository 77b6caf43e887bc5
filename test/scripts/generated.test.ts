import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generateScript, MANAGERS, scriptFile } from '../../scripts/dev/gen-scripts';

// Agents verify and run the committed scripts/patch/*-update.sh, so those files must be exactly
// what scripts/patch/src/ generates: an edit to src/ without `npm run gen:scripts` fails here.
describe('the served patch scripts are generated from scripts/patch/src', () => {
  for (const manager of MANAGERS) {
    it(`${manager}-update.sh is exactly what the generator writes now`, () => {
      assert.equal(readFileSync(scriptFile(manager), 'utf8'), generateScript(manager), 'run npm run gen:scripts');
      assert.ok(statSync(scriptFile(manager)).mode & 0o100, 'executable');
    });
  }
});
