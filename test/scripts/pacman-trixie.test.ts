import { proofSuite } from './proof-suite';
import { PacmanSandbox } from './sandboxes/pacman';

// Smoke on this generation; every case runs on bookworm and sid (docs/package-managers.md, Generations).
proofSuite(() => new PacmanSandbox('trixie'), { smoke: true });
