import { z } from 'zod';

export const ScriptParams = z.object({
  name: z.string().regex(/^[a-z]+-update\.sh$/, 'a script name like apt-update.sh'),
});
