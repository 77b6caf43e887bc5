import { z } from 'zod';
import { HookScriptName } from '../../contract/rollout-policy';
import { ScriptSignature } from '../../runtime/script-signing';

export const HookParams = z.object({ name: HookScriptName });

/**
 * A hook's bytes and (when agents trust a release key) its detached signatures, made with
 * `npm run sign:scripts` like the patch scripts'. The API checks only their form: agents verify.
 */
export const PutHookBody = z
  .object({
    content: z
      .string()
      .min(1)
      .max(256 * 1024)
      .refine((s) => !s.includes('\u0000'), 'must not contain NUL'),
    signatures: z.array(ScriptSignature).max(16).optional(),
  })
  .strict();
export type PutHookBody = z.infer<typeof PutHookBody>;
