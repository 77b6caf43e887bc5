import { z } from 'zod';
import { freeText } from '../../contract';

/** The longest an enrolment token may live: long enough to roll out a fleet, short enough to forget. */
export const MAX_ENROLMENT_SECONDS = 30 * 86400;

export const CreateEnrolmentTokenBody = z
  .object({
    /** What the token is for (e.g. "rack 4 rollout"); shown in lists, never needed to use it. */
    note: freeText(500).trim().optional(),
    expiresInSeconds: z.number().int().min(1).max(MAX_ENROLMENT_SECONDS).default(3600),
    /** How many agents it may register; null: any number until it expires. */
    maxUses: z.number().int().min(1).max(1_000_000).nullable().default(1),
    /** Agents it registers are accepted at once (an admin vouches for the hosts in advance). */
    preAccepted: z.boolean().default(false),
  })
  .strict();
export type CreateEnrolmentTokenBody = z.infer<typeof CreateEnrolmentTokenBody>;

export const EnrolmentTokenParams = z.object({
  id: z.string().regex(/^enr-[0-9a-z]{26}$/, 'an enrolment token id like enr-<ulid>'),
});
