import { proofSuite } from './proof-suite';
import { ZypperSandbox } from './sandboxes/zypper';

// Smoke on this generation; every case runs on bookworm and sid (docs/package-managers.md, Generations).
proofSuite(() => new ZypperSandbox('trixie'), { smoke: true });
