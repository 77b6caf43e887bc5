import { proofSuite } from './proof-suite';
import { ZypperSandbox } from './sandboxes/zypper';

proofSuite(() => new ZypperSandbox('sid'));
