import { z } from 'zod';

export const ListAuditQuery = z
  .object({
    /** Cursor: rows with seq greater than this (the previous page's `next`). */
    after: z
      .string()
      .regex(/^(0|[1-9][0-9]{0,17})$/, 'a row seq (a non-negative integer)')
      .optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    kind: z
      .string()
      .regex(/^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/, 'an audit kind like run.approved')
      .max(100)
      .optional(),
    subject: z
      .string()
      .min(1)
      .max(300)
      .regex(/^[\x20-\x7e]+$/, 'printable ASCII')
      .optional(),
  })
  .strict();
export type ListAuditQuery = z.infer<typeof ListAuditQuery>;
