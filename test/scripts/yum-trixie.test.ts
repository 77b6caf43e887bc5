import { proofSuite } from './proof-suite';
import { YumSandbox } from './sandboxes/rpm';

proofSuite(() => new YumSandbox('trixie'), { smoke: true });
