/** Build step: the review page's HTML and CSS next to its compiled script (tsc -p desk), where the API serves them. */
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '../../..');
const out = path.join(root, 'dist/api/desk/static');
mkdirSync(out, { recursive: true });
for (const file of ['index.html', 'desk.css']) copyFileSync(path.join(root, 'desk', file), path.join(out, file));
