import { z } from 'zod';
import { AgentId } from '../../contract';

export { AgentRegistration } from '../../contract';

export const AgentParams = z.object({ id: AgentId });
