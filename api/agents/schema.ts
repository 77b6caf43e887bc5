import { z } from 'zod';
import { AgentId } from '../../contract';

export { AgentRegistration } from '../../contract';

export const AgentParams = z.object({ id: AgentId });

/** Settings an admin changes on an agent. */
export const UpdateAgentBody = z
  .object({
    /** Runs on this agent may not be approved by the person who requested them (pinned per run). */
    fourEyes: z.boolean(),
  })
  .strict();
export type UpdateAgentBody = z.infer<typeof UpdateAgentBody>;
