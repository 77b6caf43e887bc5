/** Build step: bundle the workflow code once (~2 s) so every Worker loads it instead of re-bundling. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

async function main(): Promise<void> {
  const distRoot = path.resolve(__dirname, '../..');
  const { code } = await bundleWorkflowCode({
    workflowsPath: path.join(distRoot, 'workflows/index.js'),
    logger: quiet,
  });
  writeFileSync(path.join(distRoot, 'workflow-bundle.js'), code);
}

const quiet = { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} } as never;

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
