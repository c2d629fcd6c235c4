import { terminateBlockers } from '../pipeline/steps/locks';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(terminateBlockers);
