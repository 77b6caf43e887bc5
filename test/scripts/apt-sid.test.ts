import { proofSuite } from './proof-suite';
import { AptSandbox } from './sandboxes/apt';

proofSuite(() => new AptSandbox('sid'));
