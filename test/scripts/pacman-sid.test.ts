import { proofSuite } from './proof-suite';
import { PacmanSandbox } from './sandboxes/pacman';

proofSuite(() => new PacmanSandbox('sid'));
