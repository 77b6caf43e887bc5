import { proofSuite } from './proof-suite';
import { DnfSandbox } from './sandboxes/rpm';

proofSuite(() => new DnfSandbox('trixie'), { smoke: true });
