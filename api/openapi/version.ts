import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The package's version (package.json), the document's info.version. */
export const API_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '../../../package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
