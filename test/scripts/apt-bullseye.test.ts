import { proofSuite } from './proof-suite';
import { AptSandbox } from './sandboxes/apt';

// Smoke on this generation; every case runs on bookworm and sid (docs/package-managers.md, Generations).
proofSuite(() => new AptSandbox('bullseye'), { smoke: true });
