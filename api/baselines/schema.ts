import { z } from 'zod';

export { BaselineBody } from '../../contract/baselines';

export const BaselineParams = z.object({ id: z.string().regex(/^bl-[0-9a-z]{26}$/, 'a baseline id like bl-<ulid>') });
