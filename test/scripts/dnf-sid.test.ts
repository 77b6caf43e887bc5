import { proofSuite } from './proof-suite';
import { DnfSandbox } from './sandboxes/rpm';

proofSuite(() => new DnfSandbox('sid'));
