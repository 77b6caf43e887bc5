import { proofSuite } from './proof-suite';
import { DnfSandbox } from './sandboxes/rpm';

// Debian sid's dnf5, called as `dnf` as on Fedora 41+ (in sid itself `dnf` is still dnf 4).
proofSuite(() => new DnfSandbox('sid', 'dnf5'));
