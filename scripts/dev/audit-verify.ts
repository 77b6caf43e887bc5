/**
 * `npm run audit:verify`: walk the audit chain of the database at DATABASE_URL, print
 * `ok: N rows, head <hash>` (exit 0) or the first row that breaks it and why (exit 1).
 * Keep the printed head somewhere the database's admins cannot write (docs/audit.md).
 */
import { connect } from '../../db';
import { verifyAudit } from '../../db/audit';

async function main(): Promise<number> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('audit:verify: set DATABASE_URL to the patchnanny database');
    return 2;
  }
  const db = connect(url, { max: 1 });
  try {
    const result = await verifyAudit(db);
    if (result.ok) {
      console.log(`ok: ${result.rows} rows, head ${result.head}`);
      return 0;
    }
    console.log(`FAILED (${result.problem}) after ${result.rows} good rows: ${result.message}`);
    return 1;
  } finally {
    await db.destroy();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('audit:verify:', err instanceof Error ? err.message : err);
    process.exit(2);
  },
);
