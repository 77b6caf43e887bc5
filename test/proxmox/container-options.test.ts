/**
 * Issue 11: startIfStopped and snapshot are opt-in per run, window or container. One rule decides
 * which applies (run > window > container default > off) and says where each came from; the
 * container tests prove it end to end, this one every order of the layers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveContainerOptions } from '../../contract';

describe('container run options: run > window > container default > off', () => {
  it('nobody saying anything leaves both off', () => {
    assert.deepEqual(resolveContainerOptions({}), {
      startIfStopped: false,
      snapshot: 'none',
      from: { startIfStopped: 'off', snapshot: 'off' },
    });
  });

  it("the container's default applies when the run and its window say nothing (null or absent)", () => {
    const o = resolveContainerOptions({
      run: {},
      window: { startIfStopped: null, snapshot: null },
      container: { startIfStopped: true, snapshot: 'keep' },
    });
    assert.deepEqual(o, {
      startIfStopped: true,
      snapshot: 'keep',
      from: { startIfStopped: 'container', snapshot: 'container' },
    });
  });

  it("the window beats the container's default, and an explicit false or none counts as saying", () => {
    const o = resolveContainerOptions({
      window: { startIfStopped: false, snapshot: 'none' },
      container: { startIfStopped: true, snapshot: 'rollback' },
    });
    assert.deepEqual(o, {
      startIfStopped: false,
      snapshot: 'none',
      from: { startIfStopped: 'window', snapshot: 'window' },
    });
  });

  it('the run beats the window and the container, each option on its own', () => {
    const o = resolveContainerOptions({
      run: { snapshot: 'rollback' },
      window: { startIfStopped: true, snapshot: 'none' },
      container: { startIfStopped: false, snapshot: 'keep' },
    });
    assert.deepEqual(o, {
      startIfStopped: true,
      snapshot: 'rollback',
      from: { startIfStopped: 'window', snapshot: 'run' },
    });
  });
});
