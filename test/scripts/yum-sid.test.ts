import { proofSuite } from './proof-suite';
import { YumSandbox } from './sandboxes/rpm';

// Smoke on sid too: yum here is sid's dnf 4.24 called as yum, the very binary whose every case the
// dnf row proves on sid; the full yum proof runs on bookworm (docs/package-managers.md, Generations).
proofSuite(() => new YumSandbox('sid'), { smoke: true });
