import { z } from 'zod';
import { KEY_ID_PATTERN, LIMITS, SINGLE_LINE_TEXT } from '../../contract/workflow-safe';

export const CreateKeyBody = z
  .object({
    /** Whose key it is (the name they approve as); defaults to the caller. */
    owner: z.string().min(1).max(LIMITS.by).regex(SINGLE_LINE_TEXT, 'must not contain control characters').optional(),
    /** The raw 32-byte Ed25519 public key, base64url without padding (`patchnanny keygen` prints it). */
    publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'a 32-byte Ed25519 public key in base64url (43 characters)'),
  })
  .strict();
export type CreateKeyBody = z.infer<typeof CreateKeyBody>;

export const KeyParams = z.object({ id: z.string().regex(KEY_ID_PATTERN, 'a key id (key_…)') });
