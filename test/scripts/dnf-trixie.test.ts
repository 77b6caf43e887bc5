import { proofSuite } from './proof-suite';
import { DnfSandbox } from './sandboxes/rpm';

// Smoke on this generation; every case runs on bookworm and sid (docs/package-managers.md, Generations).
proofSuite(() => new DnfSandbox('trixie'), { smoke: true });
