export { patchRun } from './patch-run';
