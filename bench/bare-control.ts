/**
 * Baseline control worker (forked by run.ts): the bare workflows plus an empty `report`
 * activity on its own control queue, with the SDK's default Worker options like the real
 * control worker. Every finished `report` is told to the driver, which counts terminal runs.
 */
import { Context } from '@temporalio/activity';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { connectWorker, TemporalEnv } from '../runtime/temporal';
import { tell } from './ipc';

async function main(): Promise<void> {
  const [address, namespace, taskQueue] = process.argv.slice(2);
  if (!address || !namespace || !taskQueue) throw new Error('usage: bare-control.js ADDRESS NAMESPACE TASK_QUEUE');
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const { connection } = await connectWorker(
    TemporalEnv.parse({ TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace }),
  );
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue,
    workflowsPath: require.resolve('./bare-workflow'),
    activities: {
      report() {
        tell({
          type: 'activity',
          name: 'report',
          workflowId: Context.current().info.workflowExecution?.workflowId ?? '',
          at: Date.now(),
        });
      },
    },
  });
  tell({ type: 'ready', workers: 1, startMs: 0 });
  await worker.run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
