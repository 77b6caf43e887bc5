import { z } from 'zod';
import { AgentId, freeText, PackagePattern } from '../../contract';
import { Vmid } from '../../contract/proxmox';

// The path names the agent as :agentId so a bad one is reported as the field agentId.
export const AgentParams = z.object({ agentId: AgentId });
export const ExceptionParams = AgentParams.extend({
  id: z.string().regex(/^exc-[0-9a-z]{26}$/, 'an exception id like exc-<ulid>'),
});

const FutureDate = z.iso.datetime({ offset: true }).refine((s) => Date.parse(s) > Date.now(), 'must be in the future');

export const CreateExceptionBody = z
  .object({
    /** Package name, or a simple glob such as `linux-image-*`. */
    package: PackagePattern,
    reason: freeText(2000, { multiLine: true }).trim().min(1, 'a reason is required'),
    expiresAt: FutureDate.nullable().optional(),
    /** A Proxmox VE container of the agent's node (its VMID): the exception applies to it alone. */
    container: Vmid.optional(),
  })
  .strict();
export type CreateExceptionBody = z.infer<typeof CreateExceptionBody>;

export const ListExceptionsQuery = z.object({ container: Vmid.optional() }).strict();

export const UpdateExceptionBody = CreateExceptionBody.omit({ container: true })
  .partial()
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to update');
export type UpdateExceptionBody = z.infer<typeof UpdateExceptionBody>;
