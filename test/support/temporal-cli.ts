import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { temporalCli } from '../../scripts/dev/temporal-server';

const execFileAsync = promisify(execFile);

/** `temporal workflow signal --name <name> --input '<json>'` against the test run's server, as an admin sends it. */
export async function cliSignal(workflowId: string, name: 'approve' | 'reject', input: unknown): Promise<void> {
  await execFileAsync(temporalCli(), [
    'workflow',
    'signal',
    '--address',
    process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
    '--workflow-id',
    workflowId,
    '--name',
    name,
    '--input',
    JSON.stringify(input),
  ]);
}
