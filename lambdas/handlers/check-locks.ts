import { checkLocks } from '../pipeline/steps/locks';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(checkLocks);
