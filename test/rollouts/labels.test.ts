import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  LabelSelector,
  Labels,
  matchesSelector,
  parseLabelList,
  parseSelector,
  SelectorError,
} from '../../contract/labels';

describe('label selectors pick exactly the agents an admin named', () => {
  const web = { env: 'prod', role: 'web' };
  const db = { env: 'prod', role: 'db' };
  const stagingWeb = { env: 'staging', role: 'web', canary: '' };

  it('role=web matches web hosts only', () => {
    assert.equal(matchesSelector(web, 'role=web'), true);
    assert.equal(matchesSelector(db, 'role=web'), false);
    assert.equal(matchesSelector(stagingWeb, 'role=web'), true);
  });

  it('every requirement must hold (comma is AND)', () => {
    assert.equal(matchesSelector(web, 'env=prod,role=web'), true);
    assert.equal(matchesSelector(stagingWeb, 'env=prod, role=web'), false);
  });

  it('!= also matches agents without the label; bare key and !key test presence', () => {
    assert.equal(matchesSelector(web, 'env!=staging'), true);
    assert.equal(matchesSelector({}, 'env!=staging'), true);
    assert.equal(matchesSelector(stagingWeb, 'env!=staging'), false);
    assert.equal(matchesSelector(stagingWeb, 'canary'), true);
    assert.equal(matchesSelector(web, 'canary'), false);
    assert.equal(matchesSelector(web, '!canary'), true);
    assert.equal(matchesSelector(stagingWeb, '!canary'), false);
  });

  it('a selector that would match everything, or is not the grammar, is refused with its reason', () => {
    assert.throws(() => parseSelector(''), /empty selector/);
    assert.throws(() => parseSelector(' , '), /empty selector/);
    assert.throws(() => parseSelector('Role=web'), SelectorError);
    assert.throws(() => parseSelector('role=web;rm -rf /'), /not a label value/);
    assert.throws(() => parseSelector('!role=web'), /! goes only before a bare key/);
    const parsed = LabelSelector.safeParse('role=we b');
    assert.equal(parsed.success, false);
    assert.match(parsed.error.issues[0].message, /not a label value/);
  });

  it('PATCHNANNY_LABELS parses into labels and refuses what a selector could not name', () => {
    assert.deepEqual(parseLabelList('env=prod, role=web,'), { env: 'prod', role: 'web' });
    assert.deepEqual(parseLabelList(''), {});
    assert.throws(() => parseLabelList('env'), /not key=value/);
    assert.throws(() => parseLabelList('env=pro d'), /not a label value/);
    assert.equal(Labels.safeParse({ 'BAD KEY': 'x' }).success, false);
    assert.equal(
      Labels.safeParse(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']))).success,
      false,
    );
  });
});
