import { z } from 'zod';
import { freeText } from '../../contract';
import { USER_ROLES } from '../roles';

/**
 * A user's name: a slug, recorded as who requested, approved or rejected a run. No `:`, so it can
 * never pass for a machine's name (`window:…`, `agent:…`, `enrolment:…`).
 */
export const UserName = z
  .string()
  .max(64)
  .regex(/^[a-z][a-z0-9-]*$/, 'a name like alice (lower-case letters, digits and -, starting with a letter)');
export const UserRoleSchema = z.enum(USER_ROLES);

export const CreateUserBody = z
  .object({
    name: UserName,
    displayName: freeText(200).trim().min(1).optional(),
    role: UserRoleSchema,
  })
  .strict();
export type CreateUserBody = z.infer<typeof CreateUserBody>;

/** Change the role or display name; `disabled: true` refuses all the user's tokens at once. */
export const UpdateUserBody = z
  .object({
    displayName: freeText(200).trim().min(1).nullable().optional(),
    role: UserRoleSchema.optional(),
    disabled: z.boolean().optional(),
  })
  .strict();
export type UpdateUserBody = z.infer<typeof UpdateUserBody>;

export const CreateUserTokenBody = z
  .object({ note: freeText(500).trim().optional() })
  .strict()
  .default({});
export type CreateUserTokenBody = z.infer<typeof CreateUserTokenBody>;

export const UserParams = z.object({ name: UserName });
export const UserTokenParams = z.object({
  name: UserName,
  id: z.string().regex(/^utk-[0-9a-z]{26}$/, 'a user token id like utk-<ulid>'),
});
