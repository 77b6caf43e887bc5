import { z } from 'zod';
import { AgentId } from '../../contract';
import { Labels, LabelSelector } from '../../contract/labels';
import { ComplianceQuery } from '../compliance/schema';

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

/** An admin's edit of an agent's labels: the whole set, replaced (issue 12). */
export const AgentLabelsBody = z.object({ labels: Labels }).strict();
export type AgentLabelsBody = z.infer<typeof AgentLabelsBody>;

/** GET /v1/agents: compliance options, and `selector` (`role=web,env!=staging`) to list only the agents it matches. */
export const AgentListQuery = ComplianceQuery.extend({ selector: LabelSelector.optional() }).strict();
export type AgentListQuery = z.infer<typeof AgentListQuery>;
